"""`edge demo`: `edge report` on embedded defaults (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.commands._args import DEFAULT_OUT, csv_list
from edge.progress import emit, tell


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="the quantization report on embedded defaults (what `make demo` runs)")
    demo.add_argument("--out", type=Path, default=DEFAULT_OUT / "demo")
    demo.add_argument("--weights", choices=("reference", "auto", "hub", "random"), default="reference",
                      help="reference: the trained CIFAR-10 fbnetv3_b of the shared data folder ($EDGE_DATA or "
                           "../shared/data), offline; hub: ImageNet weights (downloaded if needed); auto: the hub "
                           "cache, else seeded random; random: seeded random (default: %(default)s)")
    demo.add_argument("--targets", type=csv_list, default=(),
                      help="comma-separated targets (default: every registered target)")
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--runs", type=int, default=50)
    demo.add_argument("--workers", type=int, default=2, help="processes building the artifacts side by side")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.demo import plan, run_demo
    from edge.report.render import to_markdown, write_outputs
    from edge.report.schema import validate

    plan(args.weights)  # missing data fails before the report starts
    report = run_demo(args.out, args.threads, args.runs, args.weights, args.targets, args.workers)
    validate(report)
    paths = write_outputs(report, args.out)
    emit(to_markdown(report))
    tell(f"wrote {paths['json']}, {paths['md']}, {paths['html']}")
    return 0
