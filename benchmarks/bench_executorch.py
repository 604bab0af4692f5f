"""Benchmark (not a test): eager fp32 vs `.pte` fp32 vs `.pte` int8, side by side in one run.

Latency: batch 1, same threads, warm-up then the median (p50) and p90 of >= 50 runs, each on its real
runtime. Fidelity of each artifact vs float on held-out images. Prints a table; --json writes figures.

    .venv/bin/python benchmarks/bench_executorch.py --weights PATH --calib DIR [--input-size 224]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from edge.harness import latency, run_session
from edge.metrics import compare
from edge.models import DEFAULT_MODEL, ModelSpec
from edge.pipeline import export_and_verify, load_inputs
from edge.profile import profile_pte
from edge.runtimes import runtime_for
from quantize import PTQConfig


def stock_int8_pte(inputs: Any, dest: Path) -> Path:
    """ExecuTorch's stock flow, for comparison: XNNPACKQuantizer (symmetric, per-channel) and the
    default XnnpackPartitioner, calibrated on the same images."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = inputs.model
    example = model.example_input(1)
    gm = torch.export.export(model.module, (example,)).module()
    prepared = prepare_pt2e(gm, XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
    with torch.no_grad():
        for img in inputs.calib:
            prepared(img[None])
    converted = convert_pt2e(prepared)
    ep = torch.export.export(converted, (example,))
    dest.write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--weights", default="auto")
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--calib", default=str(Path(__file__).resolve().parents[2] / "shared/data/imagenet-sample"))
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--eval-size", type=int, default=200)
    ap.add_argument("--observer", default=None, help="default: the target's (percentile)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--recalibrate-bn", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    a = ap.parse_args()

    spec = ModelSpec(name=a.model, weights=a.weights, input_size=a.input_size)
    inputs = load_inputs(spec, a.calib, a.calib_size, eval_size=a.eval_size, recalibrate_bn=a.recalibrate_bn)
    assert inputs.eval_images is not None
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "fp32": export_and_verify("executorch", inputs, "fp32", Path(tmp), None, a.threads),
            "int8": export_and_verify("executorch", inputs, "int8", Path(tmp),
                                      PTQConfig(calib_size=a.calib_size, observer=a.observer), a.threads),
            # XNNPACK's int8 depthwise kernels are slower than its fp32 ones on x86 (see the profile)
            "int8, depthwise fp32": export_and_verify(
                "executorch", inputs, "int8", Path(tmp) / "dw",
                PTQConfig(calib_size=a.calib_size, observer=a.observer, keep_float=("*.conv_dw",)), a.threads),
        }
        stock = stock_int8_pte(inputs, Path(tmp) / "stock-int8.pte")
        stock_sess = runtime_for(stock).load(stock, a.threads)
        stock_fid = compare(inputs.float_outputs, run_session(stock_sess, inputs.eval_images), inputs.eval_labels)
        x = inputs.eval_images[:1]
        lat = {"pytorch eager fp32": latency(runtime_for("pytorch").load(inputs.model.module, a.threads), x,
                                             a.runs, threads=a.threads)}
        for p, r in rows.items():
            sess = runtime_for(r["artifact"]).load(Path(r["artifact"]), a.threads)
            lat[f".pte {p}"] = latency(sess, x, a.runs, threads=a.threads)
        lat[".pte int8 (stock)"] = latency(stock_sess, x, a.runs, threads=a.threads)
        profiles = {p: profile_pte(Path(r["artifact"]), x, threads=a.threads) for p, r in rows.items()}
        profiles["int8 (stock)"] = profile_pte(stock, x, threads=a.threads)
    base = lat[".pte fp32"]["p50"]
    print(f"{spec.name} weights={inputs.model.weights_source} input={list(inputs.model.input_shape)} "
          f"threads={a.threads} runs={a.runs} held-out images={len(inputs.eval_images)}")
    cols = (("p50 ms", 9), ("p90 ms", 9), ("speed-up vs .pte fp32", 24),
            ("SQNR dB", 9), ("top-1 agree", 13), ("top-1", 8))
    print(" " * 28 + "".join(f"{c:>{w}}" for c, w in cols))
    fid = {f".pte {p}": r["parity"]["vs_float"] for p, r in rows.items()}
    fid[".pte int8 (stock)"] = stock_fid
    for k, v in lat.items():
        par = fid.get(k)
        sq = f"{par['sqnr_db']:.1f}" if par else "ref"
        ag = f"{par['agreement_top1']:.1%}" if par and par["agreement_top1"] is not None else "-"
        t1 = par["top1"] if par else rows["fp32"]["parity"]["vs_float"]["ref_top1"]
        print(f"{k:28}{v['p50']:9.2f}{v['p90']:9.2f}{base / v['p50']:23.2f}x{sq:>9}{ag:>13}"
              f"{('-' if t1 is None else f'{t1:.1%}'):>8}")
    d = rows["int8"]["delegation"]
    print(f"int8 delegation: {d['delegated_ops']} ops in XNNPACK, {d['non_delegated_ops']} left out "
          f"{d['non_delegated_by_op']}")
    print("\nETDump profile, ms per inference by XNNPACK operator kind (median of 20 runs, summed over instances):")
    for name, prof in profiles.items():
        top = ", ".join(f"{k} {v['ms']:.2f} ms (x{v['count']})" for k, v in list(prof.items())[:5])
        print(f"  {name:22} {top}")
    if a.json:
        a.json.write_text(json.dumps({"latency_ms": lat, "exports": rows, "stock_int8_vs_float": stock_fid,
                                      "profiles": profiles}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
