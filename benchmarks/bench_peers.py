"""Benchmark (not a test): edge's artifacts beside the peers' default flows, exported from the same
model in one run, each timed on its real runtime and judged against float on the same images.

Rows: edge ExecuTorch and TFLite fp32/int8 (static, and dynamic activations), ExecuTorch int8 with
--float-depthwise;
ExecuTorch's stock PT2E flow (XNNPACKQuantizer, per-channel, default XnnpackPartitioner); onnx2tf's
own int8 (`-oiqt`: its quantizer on the stock ONNX graph, calibrated on the same images); `timmx
export executorch --mode fp32/int8` when timmx is installed (skipped with a note otherwise).
Fidelity: the trained reference of the shared data folder at its own 32 px (calibration on
cifar10/train, held-out cifar10/test). Latency: the same architecture at --input-size with seeded
random weights, BatchNorm re-estimated (the 32 px reference's activations reach 1e6 at 224 px,
which says nothing about speed but aborted the TFLite quantizer).

Latency: batch 1, same threads and input, warm-up then the median of --runs, in --rounds
interleaved rounds (every artifact once per round), so the rows are side by side on one host.
Also prints which int8 dot-product instructions the host has, and the ratios ExecuTorch/LiteRT and
int8/fp32 per runtime.

    .venv/bin/python benchmarks/bench_peers.py [--input-size 224] [--calib-size 256] [--eval-size 500]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_executorch import stock_int8_pte

from edge.bench.host import int8_outlook
from edge.harness import latency, verify_artifact
from edge.models import ModelSpec
from edge.pipeline import Inputs, export_and_verify, load_inputs
from edge.reference import REFERENCE_INPUT, cifar, reference_weights
from edge.runtimes import runtime_for
from quantize import PTQConfig, recipe_config


def stock_fp32_pte(inputs: Inputs, dest: Path) -> Path:
    """ExecuTorch's stock fp32 flow: torch.export, the default XnnpackPartitioner."""
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(inputs.model.module, (inputs.model.example_input(1),))
    dest.write_bytes(to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    return dest


def timmx_pte(inputs: Inputs, weights: Path, mode: str, work: Path) -> tuple[Path | None, str]:
    """`timmx export executorch` as its README runs it; (None, why) when timmx is not installed."""
    exe = shutil.which("timmx") or (str(Path(sys.executable).parent / "timmx")
                                     if (Path(sys.executable).parent / "timmx").exists() else None)
    if exe is None:
        return None, "timmx not installed (pip install timmx): rows skipped"
    import torch

    dest = work / f"timmx-{mode}.pte"
    _, c, h, w = inputs.model.input_shape
    cmd = [exe, "export", "executorch", inputs.model.spec.name, "--checkpoint", str(weights),
           "--num-classes", str(inputs.model.num_classes), "--input-size", str(c), str(h), str(w),
           "--mode", mode, "--output", str(dest)]
    if mode == "int8":
        calib = work / "timmx-calib.pt"
        torch.save(inputs.calib.contiguous(), calib)
        cmd += ["--calibration-data", str(calib)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not dest.is_file():
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no message"]
        return None, f"timmx --mode {mode} failed (exit {res.returncode}): {tail[0]}"
    return dest, ""


def fidelity(inputs: Inputs, artifact: Path, threads: int) -> dict[str, Any]:
    assert inputs.eval_images is not None
    return verify_artifact(inputs.model, artifact, None, inputs.eval_images, inputs.eval_labels,
                           inputs.float_outputs, threads).vs_float


def export_flows(inputs: Inputs, weights: Path, work: Path, quant: PTQConfig, threads: int,
                 notes: list[str]) -> tuple[dict[str, Path], dict[str, float]]:
    """Every flow's artifact for ``inputs``' model, and its export seconds."""
    artifacts: dict[str, Path] = {}
    export_s: dict[str, float] = {}
    work.mkdir(parents=True, exist_ok=True)

    def timed(name: str, make: Any) -> None:
        t = time.perf_counter()
        path = make()
        export_s[name] = time.perf_counter() - t
        if path is not None:
            artifacts[name] = Path(path)

    for target in ("executorch", "tflite"):
        for precision in ("fp32", "int8"):
            timed(f"edge {target} {precision}", lambda t=target, p=precision: export_and_verify(
                t, inputs, p, work / f"edge-{t}", quant if p == "int8" else None, threads)["artifact"])
    for target in ("executorch", "tflite"):
        timed(f"edge {target} int8 dyn.", lambda t=target: export_and_verify(
            t, inputs, "int8", work / f"edge-{t}-dynamic", recipe_config("dynamic", quant), threads)["artifact"])
    timed("edge executorch int8 fl.dw", lambda: export_and_verify(  # --float-depthwise
        "executorch", inputs, "int8", work / "edge-executorch-float-dw", recipe_config("float-depthwise", quant),
        threads)["artifact"])
    timed("ExecuTorch stock fp32", lambda: stock_fp32_pte(inputs, work / "stock-fp32.pte"))
    timed("ExecuTorch stock int8", lambda: stock_int8_pte(inputs, work / "stock-int8.pte"))
    timed("onnx2tf -oiqt int8", lambda: export_and_verify(
        "tflite", inputs, "int8", work / "onnx2tf", quant, threads,
        options={"int8_lowering": "onnx2tf"})["artifact"])
    for mode in ("fp32", "int8"):
        def make(m: str = mode) -> Path | None:
            path, why = timmx_pte(inputs, weights, m, work)
            if why and why not in notes:
                notes.append(why)
            return path
        timed(f"timmx executorch {mode}", make)
    return artifacts, export_s


def _save_weights(inputs: Inputs, dest: Path) -> Path:
    """The (random) model's weights as a file, for timmx's --checkpoint."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in inputs.model.module.state_dict().items()}, str(dest))
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input-size", type=int, default=224,
                    help="latency input side (fidelity is measured at the reference's own 32 px)")
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--eval-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    a = ap.parse_args()

    weights = reference_weights()
    t0 = time.perf_counter()
    quant = PTQConfig(calib_size=a.calib_size)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        work = Path(tmp)
        # fidelity: the trained reference at the size it was trained at (larger inputs blow its
        # activations up: it is a 32 px model, and its figures there would mean nothing)
        spec = ModelSpec(name="fbnetv3_b", weights=str(weights), input_size=REFERENCE_INPUT)
        ref = load_inputs(spec, cifar("train"), a.calib_size, cifar("test"), a.eval_size, require_calib=True)
        built, _ = export_flows(ref, weights, work / "fidelity", quant, a.threads, notes)
        fid = {name: fidelity(ref, path, a.threads) for name, path in built.items()}
        # latency: the same architecture at --input-size, seeded random weights with BatchNorm
        # re-estimated on the calibration images (latency does not depend on the weights' values)
        spec = ModelSpec(name="fbnetv3_b", weights="random", num_classes=ref.model.num_classes,
                         input_size=a.input_size)
        inputs = load_inputs(spec, cifar("train"), a.calib_size, cifar("test"), 8, recalibrate_bn=True,
                             require_calib=True)
        artifacts, export_s = export_flows(inputs, _save_weights(inputs, work / "random.safetensors"),
                                           work / "latency", quant, a.threads, notes)
        sessions = {name: runtime_for(path).load(path, threads=a.threads) for name, path in artifacts.items()}
        assert inputs.eval_images is not None and ref.eval_images is not None
        x = inputs.eval_images[:1]
        p50s: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(a.rounds):  # interleaved: every artifact once per round
            for name, sess in sessions.items():
                p50s[name].append(latency(sess, x, a.runs, 10, a.threads)["p50"])
    p50 = {name: statistics.median(v) for name, v in p50s.items()}

    found, outlook = int8_outlook()
    print(f"fbnetv3_b; latency: input {list(inputs.model.input_shape)} (seeded random weights, BatchNorm "
          f"re-estimated), batch 1, {a.threads} threads, median of {a.runs} runs x {a.rounds} interleaved rounds; "
          f"fidelity: the trained reference at {REFERENCE_INPUT} px on {len(ref.eval_images)} held-out CIFAR-10 "
          f"test images (float top-1 {_pct(next(iter(fid.values()))['ref_top1'])})")
    print(f"host int8 instructions: {', '.join(found) or 'none'} — {outlook}")
    print(f"\n{'flow':28}{'p50 ms':>9}{'rounds':>16}{'export s':>10}{'SQNR dB':>9}{'agree':>8}{'top-1':>8}")
    empty: dict[str, Any] = {"sqnr_db": None, "agreement_top1": None, "top1": None}
    for name in artifacts:
        f = fid.get(name, empty)
        rounds = "/".join(f"{v:.2f}" for v in p50s[name])
        print(f"{name:28}{p50[name]:9.2f}{rounds:>16}{export_s[name]:10.1f}{_db(f['sqnr_db']):>9}"
              f"{_pct(f['agreement_top1']):>8}{_pct(f['top1']):>8}")
    for note in notes:
        print(f"note: {note}")
    ratios = {}
    for prec in ("fp32", "int8", "int8 dyn."):
        et, tfl = p50.get(f"edge executorch {prec}"), p50.get(f"edge tflite {prec}")
        if et and tfl:
            ratios[f"executorch/litert {prec}"] = et / tfl
    et_dw, tfl8 = p50.get("edge executorch int8 fl.dw"), p50.get("edge tflite int8")
    if et_dw and tfl8:
        ratios["executorch int8 fl.dw / litert int8"] = et_dw / tfl8
    for rt in ("executorch", "tflite"):
        f32, i8, dyn = p50.get(f"edge {rt} fp32"), p50.get(f"edge {rt} int8"), p50.get(f"edge {rt} int8 dyn.")
        if f32 and i8:
            ratios[f"{rt} int8 speed-up over fp32"] = f32 / i8
        if f32 and dyn:
            ratios[f"{rt} int8 dyn. speed-up over fp32"] = f32 / dyn
    print("\n" + "\n".join(f"{k}: {v:.2f}x" for k, v in ratios.items()))
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({"p50_ms": p50, "rounds_ms": p50s, "export_s": export_s, "fidelity": fid,
                                      "ratios": ratios, "int8_instructions": found, "notes": notes}, indent=2,
                                     default=float))
    return 0


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _db(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.1f}"


if __name__ == "__main__":
    sys.exit(main())
