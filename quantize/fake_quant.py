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
