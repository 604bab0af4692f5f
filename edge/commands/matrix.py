"""`edge matrix`: many timm models × targets × precisions, each exported, checked and timed."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.commands._args import DEFAULT_OUT, csv_list
from edge.progress import emit, tell


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("matrix", help="export, check and time many timm models on every target, as one grid")
    p.add_argument("--models", type=csv_list, default=None,
                   help="comma-separated timm model names (default: the 26 mobile models of edge.matrix.MODELS)")
    p.add_argument("--targets", type=csv_list, default=(),
                   help="comma-separated targets (default: every registered target)")
    p.add_argument("--precisions", type=csv_list, default=("fp32", "int8"),
                   help="comma-separated precisions (default: fp32,int8)")
    p.add_argument("--input-size", type=int, default=64,
                   help="square input side in px; 0: each model's timm default (default: %(default)s)")
    p.add_argument("--weights", default="random",
                   help="hub, auto, random, or a weights file for a single model (default: random; int8 "
                        "fidelity is judged only with trained weights)")
    p.add_argument("--calib", help="calibration and held-out images (default: the bundled ImageNet sample)")
    p.add_argument("--calib-size", type=int, default=16)
    p.add_argument("--eval-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="processes building cells side by side (default: 2)")
    p.add_argument("--no-reuse", action="store_true", help="re-export even when a matching artifact exists")
    p.add_argument("--artifacts", type=Path, default=None, metavar="DIR",
                   help="where artifacts are built and reused by recipe (default: OUT/artifacts)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT / "matrix", help="output folder (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from importlib.resources import files

    from edge.matrix import MODELS
    from edge.matrix.render import problems, to_markdown, write_outputs
    from edge.matrix.run import MatrixConfig, run_matrix

    cfg = MatrixConfig(models=tuple(args.models or MODELS), targets=args.targets, precisions=args.precisions,
                       input_size=args.input_size or None, weights=args.weights, calib_size=args.calib_size,
                       eval_size=args.eval_size, threads=args.threads, runs=args.runs, warmup=args.warmup,
                       workers=args.workers, reuse=not args.no_reuse, artifacts=args.artifacts)
    calib = args.calib or str(files("edge") / "assets" / "sample_images")
    result = run_matrix(args.out, cfg, calib)
    paths = write_outputs(result, args.out)
    emit(to_markdown(result))
    tell(f"wrote {paths['json']}, {paths['md']}, {paths['html']}")
    lines = problems(result)
    if lines:
        tell(f"{len(lines)} cell(s) failed or missed a goal: see {paths['md']}")
    return 0
