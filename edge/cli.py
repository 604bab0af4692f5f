"""The `edge` command. Start-up imports nothing heavy: each subcommand (edge/commands/<name>.py)
imports what it needs when it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from edge.errors import EdgeError


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors as edge's one line (exit 2), like every other bad input."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("edge").strip()
        self.exit(2, f"edge: error: {where + ': ' if where else ''}{message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from edge.commands import register_all

    parser = _Parser(
        prog="edge",
        description="Export timm models to ExecuTorch, Core ML and TFLite, and measure what int8 costs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the libraries' own output (TensorFlow, ExecuTorch, coremltools, torch); "
                             "by default it goes to edge-<command>.log beside the results")
    register_all(parser.add_subparsers(dest="command", required=True))
    return parser


def _log_folder(args: argparse.Namespace) -> Path | None:
    """Where the run's results went: --out itself when it is a folder, else the folder holding it."""
    out = getattr(args, "out", None)
    if out is None:
        return None
    out = Path(out)
    return out if out.is_dir() else out.parent


def main(argv: list[str] | None = None) -> int:
    from edge.progress import console, keep_log

    parser = build_parser()
    args = parser.parse_args(argv)
    error: str | None = None
    code = 0
    with console(verbose=args.verbose) as log:
        try:
            code = int(args.func(args))
        except EdgeError as exc:
            error, code = f"edge: error: {exc}", 2
        except KeyboardInterrupt:
            error, code = "edge: interrupted", 130
    # a failed run writes nothing into the user's folders: its log stays in the temporary folder
    kept = keep_log(log, _log_folder(args) if error is None else None, f"edge-{args.command}.log")
    if error is not None:
        print(error + (f" (library messages: {kept})" if kept is not None else ""), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
