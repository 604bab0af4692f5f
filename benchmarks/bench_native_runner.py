"""Benchmark (not a test): the native runner (runner/edge_runner) vs the Python ExecuTorch runtime
(edge/bench/device_runner.py) on the same .pte files, same threads, same runs, side by side.

Both are fresh processes printing the "edge.bench/1" JSON line, with the same warm-up semantics and
numpy-style percentiles; they alternate for --rounds rounds so that load from other processes hits
both alike. Compared: the median over rounds of each p50, and the best round's p50 (on a shared
machine the least disturbed round is the closest to the uncontended figure).

    .venv/bin/python benchmarks/bench_native_runner.py [--input-size 224] [--threads 2] [--runs 50]
    .venv/bin/python benchmarks/bench_native_runner.py --pte out/demo/*.pte   # existing artifacts
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def build_native() -> Path:
    proc = subprocess.run(["bash", str(ROOT / "scripts/build_runner.sh"), "host"], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"build_runner.sh failed:\n{proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def export_ptes(a: argparse.Namespace, dest: Path) -> list[Path]:
    """fbnetv3_b fp32 and int8 at --input-size with seeded random weights (BN re-estimated): speed
    does not depend on the weights' values."""
    from edge.models import DEFAULT_MODEL, ModelSpec
    from edge.pipeline import load_inputs
    from exporters import get_exporter
    from quantize import PTQConfig

    spec = ModelSpec(name=DEFAULT_MODEL, weights="random", input_size=a.input_size)
    inputs = load_inputs(spec, a.calib, a.calib_size, eval_size=1, recalibrate_bn=True)
    return [get_exporter("executorch").export(inputs.model, p, dest, inputs.calib, q).artifact
            for p, q in (("fp32", None), ("int8", PTQConfig(calib_size=a.calib_size)))]


def run(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if not res["ok"]:
        sys.exit(f"{cmd[0]} failed: {res['error']}")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pte", nargs="*", type=Path, help="existing .pte files (manifest beside) instead of exporting")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--calib", default=str(ROOT.parent / "shared/data/imagenet-sample"))
    ap.add_argument("--calib-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write every result line to this file")
    a = ap.parse_args()

    native = build_native()
    python_runner = ROOT / "edge/bench/device_runner.py"
    common = ["--threads", str(a.threads), "--runs", str(a.runs), "--warmup", str(a.warmup)]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ptes = a.pte or export_ptes(a, Path(tmp))
        rows = []
        for pte in ptes:
            per: dict[str, list[dict[str, Any]]] = {"native": [], "python": []}
            for _ in range(a.rounds):
                per["native"].append(run([str(native), str(pte), *common]))
                per["python"].append(run([sys.executable, str(python_runner), str(pte), *common]))
            results += per["native"] + per["python"]
            med = {k: statistics.median(r["latency_ms"]["p50"] for r in v) for k, v in per.items()}
            best = {k: min(r["latency_ms"]["p50"] for r in v) for k, v in per.items()}
            first = per["native"][0]
            rows.append((pte.name, first["precision"], med["native"], med["python"], best["native"], best["python"],
                         [r["latency_ms"]["p50"] for r in per["native"]],
                         [r["latency_ms"]["p50"] for r in per["python"]],
                         per["native"][0]["load_ms"], per["python"][0]["load_ms"],
                         per["native"][0]["peak_rss_mb"], per["python"][0]["peak_rss_mb"]))
    dev = results[0]["device"]
    print(f"\n{dev['cpu']} ({dev['cores']} cores, {dev['arch']}), ExecuTorch {results[0]['runtime_version']}, "
          f"{a.threads} threads, {a.runs} timed runs after {a.warmup} warm-up, median p50 of {a.rounds} "
          f"alternating rounds, and the best round's p50 (ms)")
    print(f"{'artifact':<30} {'prec':<5} {'native':>8} {'python':>8} {'py/nat':>6}  {'best nat':>8} {'best py':>8} "
          f"{'py/nat':>6}  {'load ms nat/py':>15} {'RSS MB nat/py':>15}   p50 per round native | python")
    for name, prec, n, p, bn, bp, nr, pr, nl, pl, nm, pm in rows:
        print(f"{name:<30} {prec or '-':<5} {n:8.3f} {p:8.3f} {p / n:6.3f}  {bn:8.3f} {bp:8.3f} {bp / bn:6.3f}  "
              f"{nl:7.1f}/{pl:<7.1f} {nm:7.1f}/{pm:<7.1f}   "
              f"{' '.join(f'{x:.2f}' for x in nr)} | {' '.join(f'{x:.2f}' for x in pr)}")
    if a.json:
        a.json.write_text("\n".join(json.dumps(r) for r in results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
