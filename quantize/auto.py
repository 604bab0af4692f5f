"""Accuracy-controlled int8 (``--target-agreement``): PTQ that keeps the fewest, cheapest units
(stem, each block, head: quantize.ptq.units) float until the int8 program's top-1 agrees with
float on the target share of the search images.

How, on one calibration (quantize/fake_quant.py's switches, one forward pass per question):

1. everything int8: done when the target is already met;
2. feasibility: every activation float and only the weights int8 is the least int8 can do; below
   the target there, no choice of float units can help — one clear error;
3. each unit's price: its share of the model's multiply-accumulates (what it costs to run it
   float instead of int8 grows with it); its worth: how much the output SQNR rises when it alone
   is left float;
4. greedy: units by worth per price, added float until the agreement reaches the target plus one
   standard error of an agreement measured on that many images (the search images are few, and a
   choice fitted to them exactly fell short on held-out images), then each chosen unit put back
   to int8 (costliest first) while that still holds;
5. the program is quantized again with those units kept float (their patterns recorded), and the
   choice travels in the program's ``meta["edge"]`` to the artifact's manifest.

The caller re-checks the artifact on held-out images (the search images are calibration images).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.metrics import sqnr_db
from edge.progress import say
from quantize.config import AutoConfig
from quantize.fake_quant import Switches, flipped_outputs, in_unit, install, outputs


def macs_by_unit(module: Any, example: Any, names: list[str]) -> dict[str, float]:
    """Multiply-accumulates per image of each unit's convs and linears, counted on ``example``."""
    import torch

    macs = dict.fromkeys(names, 0.0)
    hooks = []

    def count(path: str) -> Any:
        def hook(mod: Any, args: Any, out: Any) -> None:
            per_out = mod.weight[0].numel()  # in/groups x kernel: MACs per output element
            unit = next((u for u in names if in_unit(path, u)), None)
            if unit is not None:
                macs[unit] += out.numel() / out.shape[0] * per_out
        return hook

    for path, mod in module.named_modules():
        if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(mod.register_forward_hook(count(path)))
    try:
        with torch.no_grad():
            module(example[:1])
    finally:
        for h in hooks:
            h.remove()
    return macs


@dataclasses.dataclass
class _Judge:
    """Agreement and SQNR of the switched program against float on the search images."""

    prepared: Any
    images: Any
    ref: list[np.ndarray]

    def __call__(self) -> tuple[float, float]:
        out = outputs(self.prepared, self.images)
        agree = float(np.mean(out[0].argmax(1) == self.ref[0].argmax(1)))
        return agree, min(sqnr_db(r, o) for r, o in zip(self.ref, out, strict=True))


def choose_float_units(module: Any, example: Any, switches: Switches, images: Any, target: float,
                       body: tuple[str, ...]) -> dict[str, Any]:
    """The units to keep float (``switches``: a calibrated program's, all off on entry) and the
    figures of the choice; EdgeError when int8 cannot reach ``target`` with any float units."""
    from quantize.ptq import units

    switches.set(False)
    judge = _Judge(switches.prepared, images, outputs(switches.prepared, images))
    aim = min(target + float(np.sqrt(target * (1 - target) / len(images))), 1.0)
    names = [u for u in units(module) if any(in_unit(sw.path, u) for sw in switches.items)]
    switches.set(True)
    int8_agree, int8_db = judge()
    found: dict[str, Any] = {"int8_agreement": int8_agree, "int8_sqnr_db": round(int8_db, 2)}
    if int8_agree >= aim:
        return {**found, "aim": round(aim, 4), "kept_float": [], "agreement": int8_agree, "float_mac_share": 0.0}
    switches.set(False, [sw for sw in switches.items if not sw.weight])
    weights_agree, _ = judge()
    switches.set(True)
    if weights_agree < target:
        raise EdgeError(f"--target-agreement {target:g} cannot be met: even with every activation float and only "
                        f"the weights int8, top-1 agreement with float is {weights_agree:.3f} on the "
                        f"{len(images)} search images (int8: {int8_agree:.3f})")
    macs = macs_by_unit(module, example, names)
    total = sum(macs.values()) or 1.0
    share = {u: macs[u] / total for u in names}
    by_unit = {u: [sw for sw in switches.items if in_unit(sw.path, u)] for u in names}
    each = flipped_outputs(switches, [by_unit[u] for u in names], images, desc="auto: each unit float")
    worth = {u: min(sqnr_db(r, o) for r, o in zip(judge.ref, out, strict=True)) - int8_db
             for u, out in zip(names, each, strict=True)}
    ranked = sorted(names, key=lambda u: -worth[u] / max(share[u], 0.005))
    chosen: list[str] = []
    agree = int8_agree
    for u in ranked:
        switches.set(False, by_unit[u])
        chosen.append(u)
        agree = judge()[0]
        if agree >= aim:
            break
    for u in sorted(chosen, key=lambda u: -share[u]):  # put back what the target does not need
        switches.set(True, by_unit[u])
        trial = judge()[0]
        if trial >= aim:
            chosen.remove(u)
            agree = trial
        else:
            switches.set(False, by_unit[u])
    body_units = [u for u in names if any(in_unit(u, b) for b in body)]
    if agree < aim or (body_units and all(u in chosen for u in body_units)):
        raise EdgeError(f"--target-agreement {target:g} cannot be met with int8 left anywhere in the body "
                        f"(best on the {len(images)} search images: {agree:.3f}; int8 alone: {int8_agree:.3f})")
    chosen = [u for u in names if u in chosen]  # forward order
    return {**found, "aim": round(aim, 4), "kept_float": chosen, "agreement": agree,
            "float_mac_share": round(sum(share[u] for u in chosen), 4)}


def quantize_auto(module: Any, example: Any, images: Any, config: AutoConfig, quantizer: str) -> Any:
    """The converted program with the chosen units float; the choice is in ``program.meta["edge"]``."""
    from edge._deps import require
    from quantize.ptq import body_modules, calibrate, export_for_quantization, float_patterns, quantize_ptq
    from quantize.ptq import subtree_patterns as patterns
    from quantize.quantizers import make_quantizer

    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "int8 quantization")
    ptq = config.ptq
    effective = dataclasses.replace(ptq, keep_float=float_patterns(module, ptq))
    prepared = pt2e.prepare_pt2e(export_for_quantization(module, example).module(),
                                 make_quantizer(quantizer, effective))
    calibrate(prepared, images, ptq.calib_batch)
    search = images[: config.search_images]
    switches = install(prepared)
    try:
        choice = choose_float_units(module, example, switches, search, config.target_agreement,
                                    body_modules(module))
    finally:
        switches.restore()
    kept = choice["kept_float"]
    say(f"auto: {len(kept)} unit(s) kept float ({100 * choice['float_mac_share']:.1f}% of the MACs): "
        f"{', '.join(kept) or 'none'}; agreement on {len(search)} search images {choice['int8_agreement']:.3f} → "
        f"{choice['agreement']:.3f}")
    if kept:  # quantized again: the kept units get no observers, their neighbours' ranges are re-measured
        final = dataclasses.replace(ptq, keep_float=ptq.keep_float + patterns(tuple(kept)))
        converted = quantize_ptq(module, example, images, final, quantizer)
    else:
        from torchao.quantization.pt2e import move_exported_model_to_eval

        converted = pt2e.convert_pt2e(prepared)
        move_exported_model_to_eval(converted)
    converted.meta["edge"] = {"auto": {"target_agreement": config.target_agreement, "search_images": len(search),
                                       **choice}}
    return converted
