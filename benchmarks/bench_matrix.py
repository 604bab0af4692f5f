"""The full model matrix (issue 14): every model of edge.matrix.MODELS × every target × {fp32, int8},
exported, run on its runtime, checked for delegation and timed, with the run's wall time.

Prints the grid (matrix.md) and the cells that failed or missed a goal. Run:
.venv/bin/python benchmarks/bench_matrix.py [--input-size 64] [--models a,b] [--out out/bench_matrix]
"""

from __future__ import annotations

import argparse
import time
from importlib.resources import files
from pathlib import Path

from edge.matrix import MODELS
from edge.matrix.render import counts, to_markdown, write_outputs
from edge.matrix.run import MatrixConfig, run_matrix


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("out/bench_matrix"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-reuse", action="store_true")
    args = ap.parse_args()
    cfg = MatrixConfig(models=tuple(m for m in args.models.split(",") if m), input_size=args.input_size or None,
                       workers=args.workers, reuse=not args.no_reuse)
    t0 = time.perf_counter()
    result = run_matrix(args.out, cfg, str(files("edge") / "assets" / "sample_images"))
    seconds = time.perf_counter() - t0
    paths = write_outputs(result, args.out)
    print(to_markdown(result))
    n = counts(result)
    print(f"\n{len(result['cells'])} cells in {seconds:.0f} s: {n['ok']} ok, {n['simulated']} simulated, "
          f"{n['warn']} missed a goal, {n['fail']} failed; wrote {paths['html']}")


if __name__ == "__main__":
    main()
