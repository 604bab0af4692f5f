"""Plugin discovery shared by every registry (exporters, runtimes, device transports): a new target,
runtime or transport is one module in its package, found here."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

_DONE: set[str] = set()


def import_plugins(package: str, path: Iterable[str], skip: tuple[str, ...] = ("base",)) -> None:
    """Import every module of ``package`` once (a module imported directly registers early)."""
    if package in _DONE:
        return
    _DONE.add(package)
    for info in pkgutil.iter_modules(list(path)):
        if info.name not in skip and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
