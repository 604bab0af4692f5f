"""The manifest JSON written beside every artifact: everything a device or a later run needs to
feed the artifact correctly and to know where it came from."""

from __future__ import annotations

import dataclasses
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import edge
from edge.io import sha256_path, size_bytes
from edge.models import LoadedModel

SCHEMA = "edge.manifest/1"


def manifest_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    out: dict[str, str | None] = {"edge": edge.__version__, "python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


def build_manifest(
    model: LoadedModel,
    artifact: Path,
    target: str,
    precision: str,
    quant_config: Any,
    io: dict[str, Any],
    export_seconds: float,
    versions: tuple[str, ...],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "artifact": artifact.name,
        "artifact_sha256": sha256_path(artifact),
        "size_bytes": size_bytes(artifact),
        "target": target,
        "precision": precision,
        "quantization": dataclasses.asdict(quant_config) if quant_config is not None else None,
        "model": {
            "name": model.spec.name,
            "mode": model.spec.mode,
            "num_classes": model.num_classes,
            "weights_source": model.weights_source,
            "weights_sha256": model.weights_sha256,
            "seed": model.spec.seed,
            "notes": model.notes,
        },
        "preprocessing": model.preprocessing(),
        "io": io,
        "labels": model.labels,
        "versions": package_versions(versions),
        "export_seconds": round(export_seconds, 2),
        **(extra or {}),
    }
