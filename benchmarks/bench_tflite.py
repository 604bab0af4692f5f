"""Benchmark (not a test): onnx2tf's default int8 `.tflite` vs ours (float head, percentile ranges;
and with the head int8 too), beside fp32, in one run.

Latency: batch 1, same threads, LiteRT with its XNNPACK delegate, warm-up then p50/p90 of >= 50
runs. Fidelity of each int8 file vs float PyTorch on held-out images; delegation counts per file.

    .venv/bin/python benchmarks/bench_tflite.py [--weights PATH --input-size 32 --calib ... --eval ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from edge.harness import latency
from edge.models import DEFAULT_MODEL, ModelSpec
from edge.pipeline import export_and_verify, load_inputs
from edge.runtimes import runtime_for
from quantize import PTQConfig

DATA = Path(__file__).resolve().parents[2] / "shared/data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--weights", default="auto")
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--calib", default=str(DATA / "imagenet-sample"))
    ap.add_argument("--eval", dest="eval_data", default=None)
    ap.add_argument("--calib-size", type=int, default=128)
    ap.add_argument("--eval-size", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--recalibrate-bn", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    a = ap.parse_args()

    spec = ModelSpec(name=a.model, weights=a.weights, input_size=a.input_size)
    inputs = load_inputs(spec, a.calib, a.calib_size, a.eval_data, a.eval_size, recalibrate_bn=a.recalibrate_bn)
    assert inputs.eval_images is not None
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "fp32": export_and_verify("tflite", inputs, "fp32", Path(tmp), threads=a.threads),
            "int8 (onnx2tf default)": export_and_verify("tflite", inputs, "int8", Path(tmp) / "default",
                                                        threads=a.threads, options={"int8_lowering": "onnx2tf"}),
            "int8 (edge, int8 head)": export_and_verify("tflite", inputs, "int8", Path(tmp) / "edge-int8-head",
                                                        threads=a.threads, quant=PTQConfig(float_head=False)),
            "int8 (edge)": export_and_verify("tflite", inputs, "int8", Path(tmp) / "edge", threads=a.threads),
        }
        x = inputs.eval_images[:1]
        lat = {k: latency(runtime_for(r["artifact"]).load(Path(r["artifact"]), a.threads), x, a.runs,
                          threads=a.threads) for k, r in rows.items()}
    base = lat["fp32"]["p50"]
    print(f"{spec.name} weights={inputs.model.weights_source} input={list(inputs.model.input_shape)} "
          f"threads={a.threads} runs={a.runs} held-out images={len(inputs.eval_images)}")
    print(f"{'':26}{'p50 ms':>9}{'p90 ms':>9}{'vs fp32':>9}{'SQNR dB':>9}{'agree':>8}{'top-1':>8}"
          f"{'XNNPACK ops':>13}{'left out':>10}{'parts':>7}")
    for k, r in rows.items():
        f, d, v = r["parity"]["vs_float"], r["delegation"], lat[k]
        ag = "-" if f["agreement_top1"] is None else f"{f['agreement_top1']:.1%}"
        t1 = "-" if f["top1"] is None else f"{f['top1']:.1%}"
        print(f"{k:26}{v['p50']:9.2f}{v['p90']:9.2f}{base / v['p50']:8.2f}x{f['sqnr_db']:9.1f}{ag:>8}{t1:>8}"
              f"{d['delegated_ops']:13}{d['non_delegated_ops']:10}{d['delegated_subgraphs']:7}")
        if d["non_delegated_by_op"]:
            print(f"{'':26}left to TFLite kernels: {d['non_delegated_by_op']}")
    ref = rows["fp32"]["parity"]["vs_float"]["ref_top1"]
    if ref is not None:
        print(f"float PyTorch top-1: {ref:.1%}")
    if a.json:
        a.json.write_text(json.dumps({"latency_ms": lat, "exports": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
