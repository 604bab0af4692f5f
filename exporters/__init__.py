"""Exporters by target name. Each module in this package registers one Exporter subclass; a new
target is one new file. Modules import their heavy toolchain lazily, so discovery is cheap."""

from __future__ import annotations

import importlib
import pkgutil

from edge.errors import EdgeError
from exporters.base import Exporter, ExportResult

_REGISTRY: dict[str, type[Exporter]] = {}


def register(cls: type[Exporter]) -> type[Exporter]:
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    if _REGISTRY:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def targets() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get_exporter(name: str) -> Exporter:
    _discover()
    if name not in _REGISTRY:
        raise EdgeError(f"unknown target {name!r}; choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()


__all__ = ["ExportResult", "Exporter", "get_exporter", "register", "targets"]
