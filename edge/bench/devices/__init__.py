"""Device transports by URL scheme: `local`, `ssh://user@host[:port]`, `adb://SERIAL`.

A new transport is one new module here defining a `Device` subclass decorated with `@register`.
"""

from __future__ import annotations

from edge.bench.devices.base import BenchConfig, Device
from edge.errors import EdgeError
from edge.plugins import import_plugins

_REGISTRY: dict[str, type[Device]] = {}


def register(cls: type[Device]) -> type[Device]:
    _REGISTRY[cls.scheme] = cls
    return cls


def _discover() -> None:
    import_plugins(__name__, __path__)


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else url


def transport(url: str) -> type[Device] | None:
    """The Device class for ``url``'s scheme, or None."""
    _discover()
    return _REGISTRY.get(scheme_of(url))


def url_forms() -> list[str]:
    """How each registered transport's URLs are written (local, ssh://user@host[:port], ...)."""
    _discover()
    return [cls.url_form for _, cls in sorted(_REGISTRY.items())]


def device_for(url: str, name: str | None = None, **options: str) -> Device:
    """The transport for ``url`` (one of url_forms()) with its options."""
    cls = transport(url)
    if cls is None:
        raise EdgeError(f"unknown device {url!r}: use {', '.join(url_forms())}")
    return cls(url, name=name, **options)


__all__ = ["BenchConfig", "Device", "device_for", "register", "scheme_of", "transport", "url_forms"]
