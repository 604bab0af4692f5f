"""`edge demo`: the main job on embedded defaults (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.commands._args import DEFAULT_OUT


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="the main job on embedded defaults (what `make demo` runs)")
    demo.add_argument("--out", type=Path, default=DEFAULT_OUT / "demo")
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--runs", type=int, default=50)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.demo import main as demo_main

    return demo_main(args.out, args.threads, args.runs, args.json)
