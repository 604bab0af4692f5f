"""The full model matrix (issue 14): every model of edge.matrix.MODELS × every target × {fp32, int8},
exported, run on its runtime, checked for delegation and timed, with the run's wall time.

Prints the grid (matrix.md) and the cells that failed or missed a goal. Run:
.venv/bin/python benchmarks/bench_matrix.py [--input-size 64] [--models a,b] [--out out/bench_matrix]
--rejudge DIR re-judges DIR/matrix.json (after edge/matrix/limits.py changes) and rewrites its outputs.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.resources import files
from pathlib import Path

from edge.matrix import MODELS
from edge.matrix.render import counts, to_markdown, write_outputs
from edge.matrix.run import MatrixConfig, judge, run_matrix


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("out/bench_matrix"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-reuse", action="store_true")
    ap.add_argument("--rejudge", type=Path, metavar="DIR", help="re-judge DIR/matrix.json; nothing is built")
    args = ap.parse_args()
    if args.rejudge:
        result = json.loads((args.rejudge / "matrix.json").read_text())
        judge(result["cells"], result["settings"]["trained_weights"])
        write_outputs(result, args.rejudge)
        print(to_markdown(result))
        return
    cfg = MatrixConfig(models=tuple(m for m in args.models.split(",") if m), input_size=args.input_size or None,
                       workers=args.workers, reuse=not args.no_reuse)
    t0 = time.perf_counter()
    result = run_matrix(args.out, cfg, str(files("edge") / "assets" / "sample_images"))
    seconds = time.perf_counter() - t0
    paths = write_outputs(result, args.out)
    print(to_markdown(result))
    n = counts(result)
    print(f"\n{len(result['cells'])} cells in {seconds:.0f} s: {n['ok']} ok, {n['simulated']} simulated, "
          f"{n['warn']} missed a goal, {n['limit']} at a known upstream limit, {n['fail']} failed; "
          f"wrote {paths['html']}")


if __name__ == "__main__":
    main()
