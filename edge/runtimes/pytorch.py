"""The float reference: the eager PyTorch module itself."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.runtimes import register
from edge.runtimes.base import Runtime, Session


class TorchSession(Session):
    batch_size: int | None = None

    def __init__(self, module: Any) -> None:
        self.module = module

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        outs = out if isinstance(out, (list, tuple)) else [out]
        return [o.detach().float().numpy() for o in outs]


@register
class TorchRuntime(Runtime):
    name = "pytorch"

    def load(self, artifact: Any, threads: int | None = None) -> Session:
        import torch

        if threads:
            torch.set_num_threads(threads)
        session = TorchSession(artifact)
        meta = getattr(artifact, "meta", None)
        if isinstance(meta, dict) and meta.get("per_image"):  # dynamically quantized: one image per call,
            session.batch_size = 1  # as the artifact runs it (its ranges are measured over the batch)
        return session

    def version(self) -> str:
        import torch

        return str(torch.__version__)
