"""Reuse of artifacts across report runs: an artifact is reused only when the recipe key that built
it (exporters.base.ExportRequest.key: model, weights, target options, precision, quantization
config, calibration set, versions) is the same and the file on disk is the one that was written
(sha256 from its manifest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.io import sha256_path, write_json
from edge.manifest import manifest_path

CACHE_NAME = "report-cache.json"


class ArtifactCache:
    def __init__(self, folder: Path) -> None:
        """``folder``: the artifacts folder; the record of recipe keys sits in it."""
        self.folder = folder
        self.path = folder / CACHE_NAME
        try:
            self.entries: dict[str, str] = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (OSError, json.JSONDecodeError):
            self.entries = {}  # an unreadable cache only costs a re-export

    def reusable(self, artifact: Path, key: str) -> dict[str, Any] | None:
        """The artifact's manifest when it can be reused as is, else None."""
        mpath = manifest_path(artifact)
        if self.entries.get(self._entry(artifact)) != key or not artifact.exists() or not mpath.is_file():
            return None
        try:
            manifest: dict[str, Any] = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return manifest if manifest.get("artifact_sha256") == sha256_path(artifact) else None

    def record(self, artifact: Path, key: str) -> None:
        self.entries[self._entry(artifact)] = key
        write_json(self.path, self.entries)

    def _entry(self, artifact: Path) -> str:
        """The artifact's path relative to the artifacts folder, so a copied or moved folder keeps
        its cache (absolute outside it)."""
        path, folder = artifact.resolve(), self.folder.resolve()
        return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)
