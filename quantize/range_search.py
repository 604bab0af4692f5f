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
from quantize.fake_quant import install, outputs

FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0)  # widenings of the calibrated range tried per tensor


def _searchable(sw: Any) -> bool:
    """A per-tensor activation observer with a min/max range (weights, read from a get_attr, and
    fixed-parameter observers are left as they are)."""
    obs = sw.observer
    return (not sw.weight and sw.axis is None and hasattr(obs, "min_val") and obs.min_val.numel() == 1
            and float(obs.max_val) > float(obs.min_val))


def search_ranges(prepared: Any, images: Any, factors: tuple[float, ...] = FACTORS) -> dict[str, float]:
    """Choose and set each activation observer's range of a calibrated ``prepared`` model (changed
    in place, ready for convert_pt2e); return the widening chosen per observer."""
    switches = install(prepared)
    chosen = {name: sw for name, sw in zip(switches.names, switches.items, strict=True) if _searchable(sw)}
    try:
        ref = outputs(prepared, images)
        # weights int8 while searching, as they will convert (the ranges then fit the real error)
        switches.set(True, [sw for sw in switches.items if sw.weight])
        switches.set(True, list(chosen.values()))
        with bar(total=len(chosen), desc="range search", unit="tensor") as pbar:
            for sw in chosen.values():  # in graph order, every other tensor quantized as chosen so far
                scores = []
                for f in factors:
                    sw.factor = f
                    got = outputs(prepared, images)
                    scores.append(min(sqnr_db(r, g) for r, g in zip(ref, got, strict=True)))
                sw.factor = factors[int(np.argmax(scores))]
                pbar.update(1)
    finally:
        switches.restore(commit=True)
    return {name: sw.factor for name, sw in chosen.items()}


def searchable_observers(prepared: Any) -> dict[str, Any]:
    """Observer attribute -> observer, for the observers ``search_ranges`` chooses a range for."""
    switches = install(prepared)
    found = {n: sw.observer for n, sw in zip(switches.names, switches.items, strict=True) if _searchable(sw)}
    switches.restore()
    return found
