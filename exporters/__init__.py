"""Exporters by target name. Each module in this package registers one Exporter subclass; a new
target is one new file. Modules import their heavy toolchain lazily, so discovery is cheap."""

from __future__ import annotations

from edge.errors import EdgeError
from edge.plugins import import_plugins
from edge.validate import did_you_mean
from exporters.base import Exporter, ExportResult

_REGISTRY: dict[str, type[Exporter]] = {}


def register(cls: type[Exporter]) -> type[Exporter]:
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    import_plugins(__name__, __path__)


def targets() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def exporter_class(name: str) -> type[Exporter]:
    _discover()
    if name not in _REGISTRY:
        raise EdgeError(f"unknown target {name!r}{did_you_mean(name, _REGISTRY)}; "
                        f"choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_exporter(name: str, **options: str) -> Exporter:
    """An exporter for ``name`` with its target-specific options (see ``Exporter.options``)."""
    return exporter_class(name)(**options)


__all__ = ["ExportResult", "Exporter", "exporter_class", "get_exporter", "register", "targets"]
