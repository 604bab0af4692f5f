"""Known upstream limits: cells that fail or miss a goal because a third-party converter or runtime
cannot do what the cell asks, each with the reason (and the upstream issue where one exists),
described as data. ``explain`` matches a cell's failure reason, or the compute ops it left outside
XNNPACK; a matched cell is status "limit" with that text, so an unexplained failure stands out.

Each entry was found by the matrix (docs/matrix.md lists the models); a test keeps one of each
kind matching what the converter really says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limit:
    target: str
    pattern: str  # regex searched in the failure reason, or in each compute op left outside XNNPACK
    why: str
    upstream: str | None = None

    def matches(self, cell: dict[str, Any]) -> bool:
        if cell["target"] != self.target:
            return False
        texts = [cell["reason"] or ""] if cell["status"] == "fail" else list(cell["compute_ops_left"] or {})
        return bool(texts) and all(re.search(self.pattern, t) for t in texts)


LIMITS: tuple[Limit, ...] = (
    Limit("executorch", r"upsample_nearest2d",
          "ExecuTorch 1.5.1's XNNPACK partitioner has no config for nearest-neighbour upsampling (bilinear "
          "only), so it runs in the portable kernels"),
    Limit("executorch", r"slice_copy",
          "XNNPACK's slice takes unit strides only; a strided slice (LeViT's x[:, ::2, ::2] subsampling) "
          "runs in the portable kernels"),
    Limit("executorch", r"cumsum|pow|arange|upsample_nearest2d|slice_copy",
          "EdgeNeXt's positional encoding (cumsum, pow, arange) has no XNNPACK config in ExecuTorch 1.5.1"),
    Limit("tflite", r"onnx2tf",
          "onnx2tf 1.29.24 could not build its Keras graph for this model (its NCHW→NHWC guesses fail on "
          "this graph); 1.29.24 is the newest onnx2tf for Python 3.11"),
)


def explain(cell: dict[str, Any]) -> Limit | None:
    """The known limit a failed cell, or one that left compute ops outside XNNPACK, hits, if any (a
    missed speed or parity goal is ours to explain, never an upstream limit)."""
    if cell["status"] == "fail" or (cell["status"] == "warn" and cell["compute_ops_left"]):
        return next((lim for lim in LIMITS if lim.matches(cell)), None)
    return None
