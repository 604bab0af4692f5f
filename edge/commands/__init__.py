"""One module per `edge` subcommand: each defines ``register(subparsers)``.

A new command is one new file here; `edge.cli` finds it. Modules import only argparse-level code at
the top, so `edge --help` stays light (heavy imports happen inside the command's function).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil


def register_all(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
