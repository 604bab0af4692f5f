"""The `edge` command. Start-up imports nothing heavy: each subcommand (edge/commands/<name>.py)
imports what it needs when it runs."""

from __future__ import annotations

import argparse
import sys

from edge.errors import EdgeError


def build_parser() -> argparse.ArgumentParser:
    from edge.commands import register_all

    parser = argparse.ArgumentParser(
        prog="edge",
        description="Export timm models to ExecuTorch, Core ML and TFLite, and measure what int8 costs.",
    )
    register_all(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except EdgeError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
