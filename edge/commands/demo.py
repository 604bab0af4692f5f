"""`edge demo`: `edge report` on embedded defaults (what `make demo` runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.commands._args import DEFAULT_OUT, csv_list


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="the quantization report on embedded defaults (what `make demo` runs)")
    demo.add_argument("--out", type=Path, default=DEFAULT_OUT / "demo")
    demo.add_argument("--weights", choices=("auto", "hub", "random"), default="auto",
                      help="auto: hub weights from the local cache, else seeded random; hub: download if needed")
    demo.add_argument("--targets", type=csv_list, default=(),
                      help="comma-separated targets (default: every registered target)")
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--runs", type=int, default=50)
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.demo import run_demo
    from edge.report.render import to_markdown, write_outputs
    from edge.report.schema import validate

    report = run_demo(args.out, args.threads, args.runs, args.weights, args.targets)
    validate(report)
    paths = write_outputs(report, args.out)
    print(to_markdown(report))
    print(f"wrote {paths['json']}, {paths['md']}, {paths['html']}", file=sys.stderr)
    return 0
