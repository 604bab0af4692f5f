"""A calibrated PT2E model whose observers are switches: each observer is frozen into the fake-quant
it would convert to, and can be turned on or off (or its range widened) one at a time.

Why one mechanism: the per-layer sensitivity (edge/report/sensitivity.py), the activation range
search (quantize/range_search.py) and the accuracy-controlled mode (quantize/auto.py) all ask "what
does the output do when *these* tensors are int8?". With switches that is one forward pass per
question on one calibration, not one quantization per question.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _switch_class() -> Any:
    import torch

    class Switch(torch.nn.Module):
        """An observer frozen into fake-quant with its calibrated scale (times ``factor``, the zero
        point kept: the range grows on both sides in proportion); off = identity."""

        def __init__(self, observer: Any, weight: bool, path: str | None) -> None:
            super().__init__()
            scale, zp = observer.calculate_qparams()
            self.observer = observer
            self.scale, self.zp = scale.float(), zp.int()
            self.qmin, self.qmax = int(observer.quant_min), int(observer.quant_max)
            self.axis = getattr(observer, "ch_axis", 0) if self.scale.numel() > 1 else None
            self.weight, self.path = weight, path
            self.on, self.factor = False, 1.0
            self.stand_in: Any = None  # when set, run instead of the fake-quant (an oracle, injected noise)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.on:
                return x
            if self.stand_in is not None:
                return self.stand_in(x)
            if self.axis is not None:
                return torch.fake_quantize_per_channel_affine(x, self.scale * self.factor, self.zp, self.axis,
                                                              self.qmin, self.qmax)
            return torch.fake_quantize_per_tensor_affine(x, float(self.scale) * self.factor, int(self.zp),
                                                         self.qmin, self.qmax)

        def commit(self) -> None:
            """Give a per-tensor observer the range that converts to the widened scale, same zero point."""
            s = float(self.scale) * self.factor
            self.observer.min_val.copy_(torch.tensor((self.qmin - int(self.zp)) * s))
            self.observer.max_val.copy_(torch.tensor((self.qmax - int(self.zp)) * s))

    return Switch


@dataclass
class Switches:
    """The switches installed in ``prepared`` (graph order), and how to put the observers back."""

    prepared: Any
    items: list[Any]
    names: list[str]  # the observer attribute each switch stands in for

    def set(self, on: bool, which: list[Any] | None = None) -> None:
        for sw in self.items if which is None else which:
            sw.on = on

    def restore(self, commit: bool = False) -> None:
        """The observers back in the graph (``commit``: with the widened ranges), ready for convert_pt2e."""
        for name, sw in zip(self.names, self.items, strict=True):
            if commit and sw.axis is None and sw.factor != 1.0 and hasattr(sw.observer, "min_val"):
                sw.commit()
            setattr(self.prepared, name, sw.observer)


def _module_path(node: Any) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else None


def install(prepared: Any) -> Switches:
    """Replace every observer of a calibrated ``prepared`` model by a switch (all off). A switch's
    ``path`` is the module that produces the observed value, or for a weight (read by a get_attr)
    the module of the op that consumes it."""
    from torchao.quantization.pt2e import ObserverBase

    switch = _switch_class()
    items, names = [], []
    for node in list(prepared.graph.nodes):
        if node.op != "call_module" or not isinstance(getattr(prepared, node.target), ObserverBase):
            continue
        producer = node.args[0]
        weight = getattr(producer, "op", None) == "get_attr"
        path = None if weight else _module_path(producer)
        if path is None:
            path = next((p for p in map(_module_path, node.users) if p), None)
        sw = switch(getattr(prepared, node.target), weight, path)
        setattr(prepared, node.target, sw)
        items.append(sw)
        names.append(node.target)
    return Switches(prepared, items, names)


def outputs(prepared: Any, images: Any, batch: int = 32) -> list[np.ndarray]:
    """The switched program's outputs on ``images``, in batches (static fake-quant does not depend on them)."""
    import torch

    parts = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out = prepared(images[i : i + batch])
            parts.append([t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])])
    return [np.concatenate(p) for p in zip(*parts, strict=True)]


def in_unit(path: str | None, unit: str) -> bool:
    return path is not None and (path == unit or path.startswith(unit + "."))


def flipped_outputs(switches: Switches, groups: list[list[Any]], images: Any, batch: int = 32,
                    desc: str | None = None) -> list[list[np.ndarray]]:
    """For each group of switches: the program's outputs on ``images`` with that group flipped from
    the state the switches are in, every other switch as it is.

    Why not one forward pass per group: the graph before a group's first switch computes the same
    values for every group, so each batch runs it once (nodes in order, values freed after their
    last use) and each group re-runs only the graph from its own first switch on — on average half
    the model instead of all of it. The outputs are those of full forward passes, bit for bit (the
    program is functional: an off switch passes its input through, nothing is changed in place).
    ``desc`` names the progress bar, advanced by one per group and batch.
    """
    import torch

    from edge.progress import bar

    if len(images) == 0:
        raise ValueError("flipped_outputs needs at least one image")
    run = _NodeRunner(switches.prepared)
    # each switch once per group: listed twice, it would be flipped and flipped back
    groups = [list({id(sw): sw for sw in g}.values()) for g in groups]
    starts = [run.start(g) for g in groups]
    order = sorted(range(len(groups)), key=starts.__getitem__)
    parts: list[list[list[np.ndarray]]] = [[] for _ in groups]
    with torch.no_grad(), bar(total=len(groups) * -(-len(images) // batch), desc=desc, unit="pass") as pbar:
        for b0 in range(0, len(images), batch):
            x = images[b0 : b0 + batch]
            if not isinstance(x, torch.Tensor):
                x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            env: dict[Any, Any] = {run.placeholder: x}
            done = 0
            for g in order:
                run.steps(env, done, starts[g])  # the shared part, up to this group's first switch
                done = max(done, starts[g])
                for sw in groups[g]:
                    sw.on = not sw.on
                try:
                    parts[g].append(run.rest(dict(env), starts[g], groups[g]))
                finally:
                    for sw in groups[g]:
                        sw.on = not sw.on
                pbar.update(1)
    return [[np.concatenate(p) for p in zip(*batches, strict=True)] for batches in parts]


class _NodeRunner:
    """Runs a one-input GraphModule's nodes by index over an environment of values, freeing each
    value after its last use (get_attr values, the program's own tensors, are kept)."""

    def __init__(self, gm: Any) -> None:
        self.gm = gm
        self.nodes = list(gm.graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        inputs = [n for n in self.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise ValueError(f"flipped_outputs needs a program of one input, got {len(inputs)}")
        self.placeholder = inputs[0]
        self.last_use = {n: len(self.nodes) if n.op == "get_attr" else
                         max((self.index[u] for u in n.users), default=self.index[n]) for n in self.nodes}
        self.node_of = {id(gm.get_submodule(n.target)): n for n in self.nodes if n.op == "call_module"}

    def start(self, group: list[Any]) -> int:
        """The first node that sees the group flipped: a weight switch only matters where its weight
        is used (the weights' get_attr and switch nodes may sit at the top of the graph)."""
        firsts = [min(self.index[u] for u in self.node_of[id(sw)].users) if sw.weight
                  else self.index[self.node_of[id(sw)]] for sw in group]
        return min(firsts, default=len(self.nodes) - 1)

    def steps(self, env: dict[Any, Any], begin: int, end: int) -> None:
        for i in range(begin, end):
            n = self.nodes[i]
            if n.op == "placeholder":
                continue
            env[n] = self._evaluate(n, env)
            for a in n.all_input_nodes:
                if self.last_use[a] == i:
                    del env[a]

    def rest(self, env: dict[Any, Any], begin: int, group: list[Any]) -> list[np.ndarray]:
        """The outputs, running from ``begin`` on after re-running the group's switch nodes that sit
        before it (weight switches: their float values are in ``env``)."""
        import torch
        from torch.fx.node import map_arg

        for sw in group:
            n = self.node_of[id(sw)]
            if self.index[n] < begin:
                env[n] = self._evaluate(n, env)
        out = self.nodes[-1]
        if out.op != "output":
            raise ValueError("flipped_outputs: the program does not end in its output node")
        self.steps(env, begin, len(self.nodes) - 1)
        leaves = torch.utils._pytree.tree_leaves(map_arg(out.args[0], env.__getitem__))
        return [t.detach().float().numpy() for t in leaves]

    def _evaluate(self, n: Any, env: dict[Any, Any]) -> Any:
        from torch.fx.node import map_arg

        args, kwargs = map_arg(n.args, env.__getitem__), map_arg(n.kwargs, env.__getitem__)
        if n.op == "call_function":
            return n.target(*args, **kwargs)
        if n.op == "call_module":
            return self.gm.get_submodule(n.target)(*args, **kwargs)
        if n.op == "get_attr":
            obj = self.gm
            for part in n.target.split("."):
                obj = getattr(obj, part)
            return obj
        if n.op == "call_method":
            return getattr(args[0], n.target)(*args[1:], **kwargs)
        raise ValueError(f"flipped_outputs cannot run a {n.op} node")
