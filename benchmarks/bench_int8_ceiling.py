"""Benchmark (not a test): how much int8 fidelity the shared reference can give at all, and where it
is lost — the figures behind docs/int8_fidelity.md (issue 13).

Every row is a PyTorch program on the trained reference (fbnetv3_b, CIFAR-10, 32 px), compared with
float on the same held-out cifar10/test images (calibration from cifar10/train): logit SQNR, top-1
agreement, top-1. The int8 rows use a target quantizer's own PT2E scheme (the xnnpack quantizer by
default: int8 per-channel symmetric weights, int8 per-tensor activations, head float), calibrated
once; each observer then becomes a switch (quantize/fake_quant.py), so every row below is one forward pass
over the images:

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
* ``bfloat16``: the whole model in bf16 (an 8-bit mantissa everywhere), for scale;
* ``squeeze-excite gates float`` / ``only the gates int8``: the tensors inside the squeeze-excite
  modules (found by type, not by name: mean -> convs -> gate) left float, or alone in int8 — whether
  the SE path limits int8 (issue 13);
* with ``--worst N``: the N activation tensors that cost most when each alone is int8 (the rest
  float; quantize.fake_quant.flipped_outputs, half a forward pass each), by module path.

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


def _oracle(per_channel: bool) -> Callable[[Any], Any]:
    """int8 affine fake-quant with the exact min/max of each image's tensor (or of each channel)."""

    def quant(x: Any) -> Any:
        import torch

        dims = tuple(range(2 if per_channel else 1, x.dim()))
        lo = x.amin(dim=dims, keepdim=True).clamp(max=0)
        hi = x.amax(dim=dims, keepdim=True).clamp(min=0)
        scale = ((hi - lo) / 255.0).clamp(min=1e-12)
        zp = torch.round(-128 - lo / scale)
        return (torch.clamp(torch.round(x / scale) + zp, -128, 127) - zp) * scale

    return quant


def _noise(db: float) -> Callable[[Any], Any]:
    """Uniform noise at ``db`` dB SQNR per image (uniform(-a, a) has power a²/3)."""

    def add(x: Any) -> Any:
        import torch

        power = x.pow(2).mean(dim=tuple(range(1, x.dim())), keepdim=True)
        return x + (torch.rand_like(x) * 2 - 1) * torch.sqrt(3 * power * 10 ** (-db / 10))

    return add


def _set(switches: list[Any], on: bool, stand_in: Callable[[Any], Any] | None = None) -> None:
    for sw in switches:
        sw.on, sw.stand_in = on, stand_in


def _in_se(module: Any, path: str | None) -> bool:
    """Whether ``path`` lies inside a squeeze-excite module (timm's classes, by type)."""
    from timm.layers import SEModule, SqueezeExcite
    from timm.models._efficientnet_blocks import SqueezeExcite as BlockSE

    kinds = (SEModule, SqueezeExcite, BlockSE)
    parts = (path or "").split(".")
    for i in range(1, len(parts) + 1):
        try:
            if isinstance(module.get_submodule(".".join(parts[:i])), kinds):
                return True
        except AttributeError:
            return False
    return False


def _gated_maps(prepared: Any, installed: Any) -> set[int]:
    """The switches on a multiply's output: inside a squeeze-excite module that is the gated feature
    map (x * gate); everything else there is the gate path (mean -> convs -> gate). By op, not by
    shape: at 32 px the last stages are 1x1 in space, gated map and gate alike."""
    by_name = {n.target: n for n in prepared.graph.nodes if n.op == "call_module"}
    return {id(sw) for name, sw in zip(installed.names, installed.items, strict=True)
            if "mul" in str(getattr(by_name[name].args[0], "target", ""))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--eval-size", type=int, default=1000, help="held-out cifar10/test images (5000: all)")
    ap.add_argument("--calib-size", type=int, default=512, help="cifar10/train calibration images")
    ap.add_argument("--quantizer", default="xnnpack", help="the PT2E scheme: xnnpack (ExecuTorch) or coreml")
    ap.add_argument("--noise-db", type=float, nargs="*", default=[40.0, 50.0])
    ap.add_argument("--int8-head", action="store_true", help="quantize the classifier head too")
    ap.add_argument("--worst", type=int, default=0, help="list the N activation tensors costing most alone")
    args = ap.parse_args()

    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from quantize.fake_quant import install
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
    install_result = install(prepared)
    switches = install_result.items
    weights, acts = [sw for sw in switches if sw.weight], [sw for sw in switches if not sw.weight]
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
    row("int8 PTQ (percentile ranges)", lambda: (_set(weights, True), _set(acts, True)))
    row("weights only", lambda: (_set(weights, True), _set(acts, False)))
    row("activations only", lambda: (_set(weights, False), _set(acts, True)))
    row("activations, oracle per-image ranges", lambda: (_set(weights, False), _set(acts, True, _oracle(False))))
    row("int8, oracle per-image activation ranges", lambda: (_set(weights, True), _set(acts, True, _oracle(False))))
    row("activations, oracle per-image per-channel ranges",
        lambda: (_set(weights, False), _set(acts, True, _oracle(True))))
    gains = []
    for db in args.noise_db:
        c = row(f"noise at {db:.0f} dB on every activation",
                lambda db=db: (_set(weights, False), _set(acts, True, _noise(db))))
        gains.append(db - c["sqnr_db"])
    bf16 = copy.deepcopy(model.module).to(torch.bfloat16)

    class AsBF16(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return bf16(x.to(torch.bfloat16)).float()

    row("bfloat16 (whole model)", lambda: None, AsBF16())
    gated = _gated_maps(prepared, install_result)
    se = [sw for sw in acts if _in_se(model.module, sw.path)]
    gate = [sw for sw in se if id(sw) not in gated]
    print(f"\n{len(se)} of {len(acts)} activation quantizers sit in squeeze-excite modules; {len(gate)} of them "
          "on the 1x1 gate path (mean -> convs -> gate), the rest on the gated feature map\n")
    print("| program (vs float) | logit SQNR | top-1 agreement | top-1 |\n|---|---|---|---|")
    row("int8, squeeze-excite gate paths float", lambda: (_set(weights, True), _set(acts, True), _set(gate, False)))
    row("int8, squeeze-excite modules float (gated map too)",
        lambda: (_set(weights, True), _set(acts, True), _set(se, False)))
    row("only the gate paths int8 (activations)", lambda: (_set(switches, False), _set(gate, True)))
    if args.worst:
        from edge.metrics import sqnr_db
        from quantize.fake_quant import flipped_outputs

        _set(switches, False)
        each = flipped_outputs(install_result, [[sw] for sw in acts], images)
        cost = sorted((min(sqnr_db(r, o) for r, o in zip(ref, out, strict=True)), sw.path or "?")
                      for sw, out in zip(acts, each, strict=True))
        print(f"\nthe {args.worst} activation tensors that cost most alone in int8 (logit SQNR vs float):")
        for db, path in cost[: args.worst]:
            print(f"  {db:6.2f} dB  {path}")
    print(f"\nnoise gain of the model (activation noise SQNR minus logit SQNR): "
          f"{', '.join(f'{g:.1f} dB' for g in gains)}; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
