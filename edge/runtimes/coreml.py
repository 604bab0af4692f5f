"""Core ML through coremltools' `predict` — macOS only.

Elsewhere ``unavailable_reason`` says why, and the harness reports simulated figures from the
PyTorch program that was converted, labelled as such, with latency "not measured".
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from edge._deps import require
from edge.errors import EdgeError
from edge.manifest import manifest_path
from edge.runtimes import register
from edge.runtimes.base import Runtime, Session

COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


class CoreMLSession(Session):
    def __init__(self, model: Any, manifest: dict[str, Any]) -> None:
        self.model = model
        self.manifest = manifest
        self.labels = manifest.get("labels")
        io = manifest["io"]
        self.image_input = io["inputs"][0]["dtype"].startswith("image")
        self.logits = io.get("logits")
        self.output_names = [o["name"] for o in io["outputs"]]
        pre = manifest["preprocessing"]
        self.mean = np.array(pre["mean"], np.float32).reshape(3, 1, 1)
        self.std = np.array(pre["std"], np.float32).reshape(3, 1, 1)

    def _feed(self, x: np.ndarray) -> Any:
        if not self.image_input:
            return {"image": np.ascontiguousarray(x, dtype=np.float32)}
        from PIL import Image

        pixels = np.clip(np.rint((x[0] * self.std + self.mean) * 255.0), 0, 255).astype(np.uint8)
        return {"image": Image.fromarray(pixels.transpose(1, 2, 0), "RGB")}

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.model.predict(self._feed(x))
        if self.logits:
            scores = out[self.logits]
            keys = self.labels or sorted(scores, key=int)
            return [np.array([[scores[k] for k in keys]], np.float32)]
        return [np.asarray(out[n], np.float32) for n in self.output_names]


@register
class CoreMLRuntime(Runtime):
    name = "coreml"
    suffixes = (".mlpackage",)
    measured = platform.system() == "Darwin"

    def __init__(self, compute_units: str = "ALL") -> None:
        if compute_units not in COMPUTE_UNITS:
            raise EdgeError(f"compute units must be one of {', '.join(COMPUTE_UNITS)}, got {compute_units!r}")
        self.compute_units = compute_units

    def unavailable_reason(self) -> str | None:
        if platform.system() != "Darwin":
            return "Core ML runtime unavailable on this host (Core ML predictions run only on macOS)"
        return None

    def load(self, artifact: Path | Any, threads: int | None = None) -> Session:
        reason = self.unavailable_reason()
        if reason:
            raise EdgeError(reason)
        ct = require("coremltools", "running a Core ML model")
        path = Path(artifact)
        manifest_file = manifest_path(path)
        if not manifest_file.is_file():
            raise EdgeError(f"{path} has no manifest beside it ({manifest_file.name}); export it with edge")
        try:
            model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, self.compute_units))
        except (RuntimeError, OSError) as exc:
            raise EdgeError(f"{path} could not be loaded by Core ML: {exc}") from exc
        return CoreMLSession(model, json.loads(manifest_file.read_text()))

    def version(self) -> str:
        from importlib.metadata import version

        return version("coremltools")
