"""Per-layer sensitivity: quantize one unit (stem, each block, the head) alone with a target's own
quantizer and measure how far the output moves from float. Ranked, it says which layers to keep
float (`--keep-float-top K`) when int8 costs too much.

Calibrated once: the quantizer's observers are prepared and calibrated on the whole model, then each
observer becomes a switchable fake-quant with the scale it would convert to, and only the observers
of one unit are switched on at a time — N cheap forward passes instead of N quantizations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.harness import run_torch
from edge.metrics import sqnr_db
from edge.progress import bar
from quantize.config import PTQConfig
from quantize.ptq import body_modules


def units(module: Any) -> list[str]:
    """Module paths, in forward order, that partition the model: each top-level child outside the
    body (timm's feature stages: quantize.ptq.body_modules), and each block inside it
    (``blocks.3.1`` for timm's nested stages, ``layer2.1`` for a ResNet)."""
    import torch

    out: list[str] = []
    body = body_modules(module)
    for name, child in module.named_children():
        stages = list(child.named_children())
        if name not in body or not any(True for _, st in stages for _ in st.children()):
            out.append(name)  # outside the body, or a body part without blocks (a stem norm)
            continue
        for sname, stage in stages:
            subs = list(stage.named_children())
            if subs and isinstance(stage, (torch.nn.Sequential, torch.nn.ModuleList)):  # a stage of blocks
                out.extend(f"{name}.{sname}.{b}" for b, _ in subs)
            else:
                out.append(f"{name}.{sname}")
    return [u for u in out if any(True for _ in module.get_submodule(u).parameters())]


def _module_path(node: Any) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else None


def _unit_of(path: str | None, names: list[str]) -> str | None:
    if path is None:
        return None
    return next((u for u in names if path == u or path.startswith(u + ".")), None)


def _switch_class() -> Any:
    import torch

    class FakeQuantSwitch(torch.nn.Module):
        """An observer frozen into fake-quant with its calibrated scale; off = identity."""

        def __init__(self, observer: Any) -> None:
            super().__init__()
            scale, zp = observer.calculate_qparams()
            self.scale, self.zp = scale.float(), zp.int()
            self.qmin, self.qmax = int(observer.quant_min), int(observer.quant_max)
            self.axis = getattr(observer, "ch_axis", None) if self.scale.numel() > 1 else None
            self.on = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.on:
                return x
            if self.axis is not None:
                return torch.fake_quantize_per_channel_affine(x, self.scale, self.zp, self.axis, self.qmin, self.qmax)
            return torch.fake_quantize_per_tensor_affine(x, float(self.scale), int(self.zp), self.qmin, self.qmax)

    return FakeQuantSwitch


def layer_sensitivity(model: Any, calib: Any, images: np.ndarray, float_outputs: list[np.ndarray], quantizer: str,
                      config: PTQConfig, calib_size: int = 64, max_images: int = 64) -> list[dict[str, Any]]:
    """For each unit: output SQNR (dB) vs float with only that unit quantized; worst first."""
    from torchao.quantization.pt2e import ObserverBase
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from quantize.ptq import calibrate, export_for_quantization
    from quantize.quantizers import make_quantizer

    names = units(model.module)
    images, float_outputs = images[:max_images], [f[:max_images] for f in float_outputs]
    cfg = PTQConfig(**{**config.__dict__, "float_head": False, "keep_float": ()})
    prepared = prepare_pt2e(export_for_quantization(model.module, model.example_input()).module(),
                            make_quantizer(quantizer, cfg))
    calibrate(prepared, calib[: min(calib_size, len(calib))], cfg.calib_batch, desc=f"calibrating ({quantizer})")
    switch = _switch_class()
    by_unit: dict[str, list[Any]] = {u: [] for u in names}
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not isinstance(getattr(prepared, node.target), ObserverBase):
            continue
        producer = node.args[0]
        path = _module_path(producer) if producer.op != "get_attr" else None
        if path is None:  # a weight (get_attr): it belongs to the op that consumes the observed value
            path = next((p for p in map(_module_path, node.users) if p), None)
        unit = _unit_of(path, names)
        sw = switch(getattr(prepared, node.target))
        setattr(prepared, node.target, sw)
        if unit is not None:
            by_unit[unit].append(sw)
    results = []
    classifier = model.spec.mode == "classifier"
    with bar(total=len(names), desc=f"sensitivity ({quantizer})", unit="layer") as pbar:
        for unit in names:
            for sw in by_unit[unit]:
                sw.on = True
            outs = run_torch(prepared, images)
            for sw in by_unit[unit]:
                sw.on = False
            db = min(sqnr_db(r, o) for r, o in zip(float_outputs, outs, strict=True))
            agree = float(np.mean(outs[0].argmax(1) == float_outputs[0].argmax(1))) if classifier else None
            results.append({"layer": unit, "sqnr_db": round(db, 2), "agreement_top1": agree,
                            "quantized_tensors": len(by_unit[unit])})
            pbar.update(1)
    return sorted(results, key=lambda r: r["sqnr_db"])
