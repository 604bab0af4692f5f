"""Per-layer sensitivity: quantize one unit (stem, each block, the head) alone with a target's own
quantizer and measure how far the output moves from float. Ranked, it says which layers to keep
float (`--keep-float-top K`) when int8 costs too much.

Calibrated once: the quantizer's observers are prepared and calibrated on the whole model, then each
observer becomes a switchable fake-quant with the scale it would convert to, and only the observers
of one unit are switched on at a time — N cheap forward passes instead of N quantizations, each
re-running only the graph from that unit's first quantized tensor on (the float part before it is
shared: quantize.fake_quant.flipped_outputs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.metrics import sqnr_db
from quantize.config import PTQConfig
from quantize.fake_quant import flipped_outputs, in_unit, install
from quantize.ptq import units

BATCH = 16  # images per forward pass: the same for every unit, so units compare on equal terms


def layer_sensitivity(model: Any, calib: Any, images: np.ndarray, float_outputs: list[np.ndarray], quantizer: str,
                      config: PTQConfig, calib_size: int = 64, max_images: int = 64) -> list[dict[str, Any]]:
    """For each unit: output SQNR (dB) vs float with only that unit quantized; worst first."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from quantize.ptq import calibrate, export_for_quantization
    from quantize.quantizers import make_quantizer

    names = units(model.module)
    images, float_outputs = images[:max_images], [f[:max_images] for f in float_outputs]
    cfg = PTQConfig(**{**config.__dict__, "float_head": False, "keep_float": ()})
    prepared = prepare_pt2e(export_for_quantization(model.module, model.example_input()).module(),
                            make_quantizer(quantizer, cfg))
    calibrate(prepared, calib[: min(calib_size, len(calib))], cfg.calib_batch, desc=f"calibrating ({quantizer})")
    switches = install(prepared)
    by_unit: dict[str, list[Any]] = {u: [sw for sw in switches.items if in_unit(sw.path, u)] for u in names}
    results = []
    classifier = model.spec.mode == "classifier"
    every = flipped_outputs(switches, [by_unit[u] for u in names], images, BATCH, f"sensitivity ({quantizer})")
    for unit, outs in zip(names, every, strict=True):
        db = min(sqnr_db(r, o) for r, o in zip(float_outputs, outs, strict=True))
        agree = float(np.mean(outs[0].argmax(1) == float_outputs[0].argmax(1))) if classifier else None
        results.append({"layer": unit, "sqnr_db": round(db, 2), "agreement_top1": agree,
                        "quantized_tensors": len(by_unit[unit])})
    return sorted(results, key=lambda r: r["sqnr_db"])
