"""The runtime interface: load an artifact once, then run batches through it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class Session(ABC):
    """A loaded artifact. ``run`` takes one NCHW float32 batch and returns float32 outputs."""

    @abstractmethod
    def run(self, x: np.ndarray) -> list[np.ndarray]: ...

    def run_batched(self, x: np.ndarray) -> list[np.ndarray]:
        """Run a batch through a batch-1 artifact image by image and stack the outputs."""
        if self.batch_size is None or x.shape[0] == self.batch_size:
            return self.run(x)
        outs = [self.run(x[i : i + 1]) for i in range(x.shape[0])]
        return [np.concatenate(parts, axis=0) for parts in zip(*outs, strict=True)]

    batch_size: int | None = 1  # None = any batch size


class Runtime(ABC):
    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    measured: ClassVar[bool] = True  # False where figures come from a simulation, not the real runtime

    @abstractmethod
    def load(self, artifact: Path | Any, threads: int | None = None) -> Session: ...

    def unavailable_reason(self) -> str | None:
        """Why this runtime cannot run on this host (None when it can)."""
        return None

    def version(self) -> str:
        return "unknown"
