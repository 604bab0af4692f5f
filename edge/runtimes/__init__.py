"""Runtimes that execute an artifact for real, behind one small interface.

A runtime module registers itself for the artifact suffixes it runs; adding a runtime is one file
here. Every session takes NCHW float32 inputs and returns float32 outputs, whatever the artifact's
own layout and dtype, so the harness can compare any artifact with the float model.
"""

from __future__ import annotations

from pathlib import Path

from edge.errors import EdgeError
from edge.plugins import import_plugins
from edge.runtimes.base import Runtime, Session

_REGISTRY: dict[str, type[Runtime]] = {}


def register(cls: type[Runtime]) -> type[Runtime]:
    for suffix in cls.suffixes:
        _REGISTRY[suffix] = cls
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    import_plugins(__name__, __path__)


def runtime_for(artifact: Path | str, **options: str) -> Runtime:
    """The runtime that executes ``artifact`` (chosen by suffix), or a runtime by name; ``options``
    are the runtime's own (e.g. Core ML's compute_units)."""
    _discover()
    key = str(artifact)
    cls = _REGISTRY.get(key) or _REGISTRY.get(Path(key).suffix.lower())
    if cls is None:
        raise EdgeError(f"no runtime knows how to run {artifact!r} (known: {', '.join(sorted(_REGISTRY))})")
    return cls(**options)


__all__ = ["Runtime", "Session", "register", "runtime_for"]
