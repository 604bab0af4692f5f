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
                    progress: Any = None) -> list[list[np.ndarray]]:
    """For each group of switches: the program's outputs on ``images`` with that group flipped from
    the state the switches are in, every other switch as it is.

    Why not one forward pass per group: the graph before a group's first switch computes the same
    values for every group, so each batch runs it once (nodes in order, values freed after their
    last use) and each group re-runs only the graph from its own first switch on — on average half
    the model instead of all of it. The outputs are those of full forward passes, bit for bit.
    ``progress`` (a bar) is advanced by one per group and batch.
    """
    import torch
    from torch.fx.node import map_arg

    gm = switches.prepared
    nodes = list(gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"flipped_outputs needs a program of one input, got {len(placeholders)}")
    # get_attr values are the program's own tensors: never freed, so a weight switch can re-read them
    last_use = {n: len(nodes) if n.op == "get_attr" else max((index[u] for u in n.users), default=index[n])
                for n in nodes}
    node_of = {id(getattr(gm, n.target)): n for n in nodes if n.op == "call_module"}

    def start(group: list[Any]) -> int:
        """The first node that sees the flip: a weight switch only matters where its weight is used."""
        return min((min(index[u] for u in node_of[id(sw)].users) if sw.weight else index[node_of[id(sw)]]
                    for sw in group), default=len(nodes) - 1)

    order = sorted(range(len(groups)), key=lambda g: start(groups[g]))
    starts = [start(groups[g]) for g in order]

    def evaluate(n: Any, env: dict[Any, Any]) -> Any:
        args = map_arg(n.args, env.__getitem__)
        kwargs = map_arg(n.kwargs, env.__getitem__)
        if n.op == "call_function":
            return n.target(*args, **kwargs)
        if n.op == "call_module":
            return gm.get_submodule(n.target)(*args, **kwargs)
        if n.op == "get_attr":
            obj = gm
            for part in n.target.split("."):
                obj = getattr(obj, part)
            return obj
        if n.op == "call_method":
            return getattr(args[0], n.target)(*args[1:], **kwargs)
        raise ValueError(f"flipped_outputs cannot run a {n.op} node")

    def run(env: dict[Any, Any], begin: int, redo: list[Any]) -> list[np.ndarray]:
        """Nodes from ``begin`` on (after re-running ``redo``, switch nodes before it) to the outputs."""
        for n in redo:
            env[n] = evaluate(n, env)
        for i in range(begin, len(nodes)):
            n = nodes[i]
            if n.op == "output":
                leaves = torch.utils._pytree.tree_leaves(map_arg(n.args[0], env.__getitem__))
                return [t.detach().float().numpy() for t in leaves]
            env[n] = evaluate(n, env)
            for a in n.all_input_nodes:
                if last_use[a] == i:
                    del env[a]
        raise ValueError("flipped_outputs: the program has no output node")

    parts: list[list[list[np.ndarray]]] = [[] for _ in groups]
    with torch.no_grad():
        for b0 in range(0, len(images), batch):
            x = images[b0 : b0 + batch]
            if not isinstance(x, torch.Tensor):
                x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            env: dict[Any, Any] = {placeholders[0]: x}
            done = 0
            for g, begin in zip(order, starts, strict=True):
                for i in range(done, begin):  # the shared part, up to this group's first switch
                    n = nodes[i]
                    if n.op == "placeholder":
                        continue
                    env[n] = evaluate(n, env)
                    for a in n.all_input_nodes:
                        if last_use[a] == i:
                            del env[a]
                done = max(done, begin)
                flip = groups[g]
                for sw in flip:
                    sw.on = not sw.on
                try:
                    redo = [node_of[id(sw)] for sw in flip if index[node_of[id(sw)]] < begin]
                    parts[g].append(run(dict(env), begin, redo))
                finally:
                    for sw in flip:
                        sw.on = not sw.on
                if progress is not None:
                    progress.update(1)
    return [[np.concatenate(p) for p in zip(*batches, strict=True)] for batches in parts]
