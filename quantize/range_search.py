"""Activation ranges chosen per tensor by the model's output error (``--observer search``).

Why: one fixed rule (a percentile, min/max) suits some tensors and not others. On the trained
reference, widening a late block's percentile range 3-4x (coarser steps, no clipping) raised the
output SQNR of that tensor's quantization alone by 8-14 dB, while early tensors want fine steps. So
each activation observer of a calibrated PT2E model is tried at a few widenings of its calibrated
range and keeps the one whose fake-quant moves the model output least from float on the search
images; the observers then convert with those ranges.

Greedy, in graph order, with every other activation quantized at the range chosen so far (tried
alone instead, each tensor widened where it helped alone, and together they were worse than the
percentile ranges: the errors interact). The cost is observers x factors forward passes on a
small image set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.metrics import sqnr_db
from edge.progress import bar

FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0)  # widenings of the calibrated range tried per tensor


class _Switch:
    """A calibrated activation observer as a fake-quant that can be switched on, at a scale
    widened by ``factor`` (the zero point kept: the range grows in proportion on both sides)."""

    def __init__(self, observer: Any) -> None:
        scale, zp = observer.calculate_qparams()
        self.observer, self.scale, self.zp = observer, float(scale), int(zp)
        self.qmin, self.qmax = int(observer.quant_min), int(observer.quant_max)
        self.factor, self.on = 1.0, False

    def __call__(self, x: Any) -> Any:
        import torch

        if not self.on:
            return x
        return torch.fake_quantize_per_tensor_affine(x, self.scale * self.factor, self.zp, self.qmin, self.qmax)

    def commit(self) -> None:
        """Give the observer the range that converts to the chosen scale and the same zero point."""
        import torch

        s = self.scale * self.factor
        self.observer.min_val.copy_(torch.tensor((self.qmin - self.zp) * s))
        self.observer.max_val.copy_(torch.tensor((self.qmax - self.zp) * s))


def _activation_observers(prepared: Any) -> dict[str, Any]:
    """Observer module name -> observer, for the per-tensor activation observers with a min/max
    range (weights, read from a get_attr, and fixed-parameter observers are left as they are)."""
    from torchao.quantization.pt2e import ObserverBase

    found: dict[str, Any] = {}
    for node in prepared.graph.nodes:
        if node.op != "call_module":
            continue
        obs = getattr(prepared, node.target)
        if (isinstance(obs, ObserverBase) and hasattr(obs, "min_val") and obs.min_val.numel() == 1
                and node.args and getattr(node.args[0], "op", None) != "get_attr"
                and float(obs.max_val) > float(obs.min_val)):
            found[node.target] = obs
    return found


def _outputs(prepared: Any, images: Any) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = prepared(images)
    return [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]


def search_ranges(prepared: Any, images: Any, factors: tuple[float, ...] = FACTORS) -> dict[str, float]:
    """Choose and set each activation observer's range of a calibrated ``prepared`` model (changed
    in place, ready for convert_pt2e); return the widening chosen per observer."""
    observers = _activation_observers(prepared)
    switches = {name: _Switch(obs) for name, obs in observers.items()}
    for name, sw in switches.items():
        setattr(prepared, name, _as_module(sw))
    try:
        ref = _outputs(prepared, images)
        for sw in switches.values():
            sw.on = True
        with bar(total=len(switches), desc="range search", unit="tensor") as pbar:
            for sw in switches.values():  # in graph order, every other tensor quantized as chosen so far
                scores = []
                for f in factors:
                    sw.factor = f
                    got = _outputs(prepared, images)
                    scores.append(min(sqnr_db(r, g) for r, g in zip(ref, got, strict=True)))
                sw.factor = factors[int(np.argmax(scores))]
                pbar.update(1)
    finally:
        for name, obs in observers.items():
            setattr(prepared, name, obs)
    for sw in switches.values():
        sw.commit()
    return {name: sw.factor for name, sw in switches.items()}


def _as_module(switch: _Switch) -> Any:
    """``switch`` as a torch module, to stand in for its observer in the graph."""
    import torch

    class SwitchModule(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return switch(x)

    return SwitchModule()
