"""Benchmark (not a test): how much int8 fidelity the shared reference can give at all, and where it
is lost — the figures behind docs/int8_fidelity.md (issue 13).

Every row is a PyTorch program on the trained reference (fbnetv3_b, CIFAR-10, 32 px), compared with
float on the same held-out cifar10/test images (calibration from cifar10/train): logit SQNR, top-1
agreement, top-1. The int8 rows use a target quantizer's own PT2E scheme (the xnnpack quantizer by
default: int8 per-channel symmetric weights, int8 per-tensor activations, head float), calibrated
once; each observer then becomes a switch, so every row below is one forward pass over the images:

* ``ptq``: weights and activations fake-quantized at the calibrated ranges (what the .pte reproduces);
* ``weights only`` / ``activations only``: one half of it;
* ``activations, oracle per-image ranges``: every activation tensor quantized with the exact min/max
  of *that image's* tensor — no clipping and the finest step any static per-tensor range could
  have for that image. No calibration choice (percentile, histogram, MSE search) can beat it by
  more than what clipping the rare outliers gains, so it bounds what range choice can reach;
* ``activations, oracle per-image per-channel``: the same per channel (not an XNNPACK option; it
  shows what the per-tensor granularity costs);
* ``noise at N dB``: uniform noise at N dB SQNR added to every activation tensor (weights float):
  the model's noise gain is N minus the logit SQNR;
* ``bfloat16``: the whole model in bf16 (an 8-bit mantissa everywhere), for scale.

    .venv/bin/python benchmarks/bench_int8_ceiling.py [--eval-size 5000] [--calib-size 512]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

from edge.harness import run_torch
from edge.metrics import compare
from edge.models import ModelSpec
from edge.pipeline import load_inputs
from edge.reference import REFERENCE_INPUT, cifar, reference_weights
from quantize.config import PTQConfig


def _switches(prepared: Any) -> tuple[list[Any], list[Any]]:
    """Each observer of a calibrated PT2E model replaced by a ``Switch``; (weights, activations)."""
    import torch
    from torchao.quantization.pt2e import ObserverBase

    class Switch(torch.nn.Module):
        """Identity, or the observer's fake-quant, or an oracle/noise stand-in for it (``mode``)."""

        def __init__(self, observer: Any) -> None:
            super().__init__()
            scale, zp = observer.calculate_qparams()
            self.scale, self.zp = scale.float(), zp.int()
            self.qmin, self.qmax = int(observer.quant_min), int(observer.quant_max)
            self.axis = getattr(observer, "ch_axis", 0) if self.scale.numel() > 1 else None
            self.mode: str = "off"
            self.noise_db = 40.0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.mode == "off":
                return x
            if self.mode == "static":
                if self.axis is not None:
                    return torch.fake_quantize_per_channel_affine(x, self.scale, self.zp, self.axis,
                                                                  self.qmin, self.qmax)
                return torch.fake_quantize_per_tensor_affine(x, float(self.scale), int(self.zp), self.qmin,
                                                             self.qmax)
            if self.mode == "noise":
                power = x.pow(2).mean(dim=tuple(range(1, x.dim())), keepdim=True)
                amp = torch.sqrt(3 * power * 10 ** (-self.noise_db / 10))  # uniform(-a, a) has power a²/3
                return x + (torch.rand_like(x) * 2 - 1) * amp
            # oracle: per-sample (per-channel) min/max of this very tensor, affine int8
            dims = tuple(range(1, x.dim())) if self.mode == "oracle" else tuple(range(2, x.dim()))
            lo = x.amin(dim=dims, keepdim=True).clamp(max=0)
            hi = x.amax(dim=dims, keepdim=True).clamp(min=0)
            scale = ((hi - lo) / (self.qmax - self.qmin)).clamp(min=1e-12)
            zp = torch.round(self.qmin - lo / scale)
            q = torch.clamp(torch.round(x / scale) + zp, self.qmin, self.qmax)
            return (q - zp) * scale

    weights, acts = [], []
    for node in list(prepared.graph.nodes):
        if node.op != "call_module" or not isinstance(getattr(prepared, node.target), ObserverBase):
            continue
        sw = Switch(getattr(prepared, node.target))
        setattr(prepared, node.target, sw)
        (weights if node.args[0].op == "get_attr" else acts).append(sw)
    return weights, acts


def _set(switches: list[Any], mode: str) -> None:
    for sw in switches:
        sw.mode = mode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval-size", type=int, default=1000, help="held-out cifar10/test images (5000: all)")
    ap.add_argument("--calib-size", type=int, default=512, help="cifar10/train calibration images")
    ap.add_argument("--quantizer", default="xnnpack", help="the PT2E scheme: xnnpack (ExecuTorch) or coreml")
    ap.add_argument("--noise-db", type=float, nargs="*", default=[40.0, 50.0])
    ap.add_argument("--int8-head", action="store_true", help="quantize the classifier head too")
    args = ap.parse_args()

    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from quantize.ptq import calibrate, export_for_quantization, float_patterns
    from quantize.quantizers import make_quantizer

    torch.manual_seed(0)
    spec = ModelSpec(weights=str(reference_weights()), input_size=REFERENCE_INPUT)
    inputs = load_inputs(spec, cifar("train"), args.calib_size, cifar("test"), args.eval_size)
    model, images, labels = inputs.model, inputs.eval_images, inputs.eval_labels
    assert images is not None and inputs.float_outputs is not None
    ref = inputs.float_outputs
    cfg = PTQConfig(calib_size=args.calib_size, observer="percentile", float_head=not args.int8_head)
    cfg = PTQConfig(**{**cfg.__dict__, "keep_float": float_patterns(model.module, cfg)})
    t0 = time.perf_counter()
    prepared = prepare_pt2e(export_for_quantization(model.module, model.example_input()).module(),
                            make_quantizer(args.quantizer, cfg))
    calibrate(prepared, inputs.calib, cfg.calib_batch)
    weights, acts = _switches(prepared)
    print(f"reference: {spec.weights}; {len(images)} held-out cifar10/test images, {args.calib_size} calibration "
          f"images; {args.quantizer} scheme, {len(weights)} weight and {len(acts)} activation quantizers "
          f"(head {'int8' if args.int8_head else 'float'})\n")

    def row(name: str, setup: Callable[[], None], program: Any = prepared) -> dict[str, Any]:
        setup()
        outs = run_torch(program, images)
        c = compare(ref, outs, labels, True)
        print(f"| {name} | {c['sqnr_db']:.2f} dB | {100 * c['agreement_top1']:.1f} % | {100 * c['top1']:.1f} % |")
        return c

    print("| program (vs float) | logit SQNR | top-1 agreement | top-1 |\n|---|---|---|---|")
    fl = compare(ref, ref, labels, True)
    print(f"| float | ∞ | 100.0 % | {100 * fl['top1']:.1f} % |")
    row("int8 PTQ (percentile ranges)", lambda: (_set(weights, "static"), _set(acts, "static")))
    row("weights only", lambda: (_set(weights, "static"), _set(acts, "off")))
    row("activations only", lambda: (_set(weights, "off"), _set(acts, "static")))
    row("activations, oracle per-image ranges", lambda: (_set(weights, "off"), _set(acts, "oracle")))
    row("int8, oracle per-image activation ranges", lambda: (_set(weights, "static"), _set(acts, "oracle")))
    row("activations, oracle per-image per-channel ranges",
        lambda: (_set(weights, "off"), _set(acts, "oracle_channel")))
    gains = []
    for db in args.noise_db:
        def noisy(db: float = db) -> None:
            _set(weights, "off")
            _set(acts, "noise")
            for sw in acts:
                sw.noise_db = db
        c = row(f"noise at {db:.0f} dB on every activation", noisy)
        gains.append(db - c["sqnr_db"])
    bf16 = copy.deepcopy(model.module).to(torch.bfloat16)

    class AsBF16(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return bf16(x.to(torch.bfloat16)).float()

    row("bfloat16 (whole model)", lambda: None, AsBF16())
    print(f"\nnoise gain of the model (activation noise SQNR minus logit SQNR): "
          f"{', '.join(f'{g:.1f} dB' for g in gains)}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
