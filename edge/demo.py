"""`edge demo` (what `make demo` runs): the main job on embedded defaults.

fbnetv3_b.ra2_in1k with hub weights if they are in the local cache (no download), else seeded random
weights with BatchNorm re-estimated on the images — the output says which. Calibrates on the
committed sample images, exports fp32 and int8 `.pte`, checks both on the ExecuTorch runtime against
float on held-out images, and times eager vs `.pte` fp32 vs `.pte` int8 side by side.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from edge.harness import latency
from edge.io import ensure_writable_dir, write_json
from edge.models import DEFAULT_MODEL, ModelSpec
from edge.pipeline import export_and_verify, load_inputs
from edge.progress import say
from edge.runtimes import runtime_for

SAMPLE_IMAGES = "assets/sample_images"


def sample_images() -> Path:
    return Path(str(files("edge").joinpath(SAMPLE_IMAGES)))


def run_demo(out: Path, threads: int = 2, runs: int = 50, calib_size: int = 32) -> dict[str, Any]:
    from quantize import PTQConfig

    ensure_writable_dir(out)
    spec = ModelSpec(name=DEFAULT_MODEL, weights="auto")
    probe = load_inputs(spec, None, calib_size)  # cheap: decides hub cache vs random
    random_weights = probe.model.weights_source.startswith("random")
    inputs = load_inputs(spec, str(sample_images()), calib_size, eval_size=64, recalibrate_bn=random_weights)
    rows = []
    for precision in ("fp32", "int8"):
        q = PTQConfig(calib_size=calib_size) if precision == "int8" else None
        rows.append(export_and_verify("executorch", inputs, precision, out, q, threads))
    assert inputs.eval_images is not None
    example = inputs.eval_images[:1]
    say("timing eager PyTorch, .pte fp32 and .pte int8")
    lat = {"pytorch fp32": latency(runtime_for("pytorch").load(inputs.model.module, threads), example, runs,
                                   threads=threads, desc="eager")}
    for r in rows:
        sess = runtime_for(r["artifact"]).load(Path(r["artifact"]), threads)
        lat[f"executorch {r['precision']}"] = latency(sess, example, runs, threads=threads, desc=r["precision"])
    summary = {"model": spec.name, "weights": inputs.model.weights_source, "notes": inputs.model.notes,
               "exports": rows, "latency_ms": lat}
    write_json(out / "demo.json", summary)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    from edge.formatting import format_parity

    head = [f"model {s['model']}  weights {s['weights']}"] + [f"  note: {n}" for n in s["notes"]]
    body = [format_parity(r) for r in s["exports"]]
    base = s["latency_ms"]["executorch fp32"]["p50"]
    lat = ["latency (batch 1, median of {runs} runs, {threads} threads):".format(**s["latency_ms"]["executorch fp32"])]
    for k, v in s["latency_ms"].items():
        lat.append(f"  {k:<18} p50 {v['p50']:8.2f} ms   p90 {v['p90']:8.2f} ms   {base / v['p50']:.2f}x vs .pte fp32")
    return "\n".join(head + body + lat)


def main(out: Path, threads: int, runs: int, as_json: bool) -> int:
    s = run_demo(out, threads, runs)
    print(json.dumps(s, indent=2) if as_json else format_summary(s))
    return 0
