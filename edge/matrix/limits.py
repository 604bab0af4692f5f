"""Known upstream limits: cells that fail or miss a goal because a third-party converter or runtime
cannot do what the cell asks, each with the reason (and the upstream issue where one exists),
described as data. A limit explains either a failure (its ``reason`` pattern matches the cell's
one-line reason) or ops left outside XNNPACK (its ``ops`` pattern matches the op's name). A cell is
explained when its failure, or every compute op it left out, is; such a cell is status "limit" with
the reasons, so an unexplained failure stands out.

Each entry was found by the matrix (docs/matrix.md lists the models); tests keep entries matching
what the converters really say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limit:
    target: str
    why: str
    ops: str | None = None  # regex searched in each op name left outside XNNPACK
    reason: str | None = None  # regex searched in a failed cell's reason
    upstream: str | None = None


_NO_CONFIG = "ExecuTorch 1.5.1's XNNPACK partitioner has no config for"

LIMITS: tuple[Limit, ...] = (
    Limit("executorch", f"{_NO_CONFIG} nearest-neighbour upsampling (bilinear only)", ops=r"upsample_nearest"),
    Limit("executorch", "XNNPACK's slice takes unit strides only (LeViT's x[:, ::2, ::2] subsampling is strided)",
          ops=r"slice_copy"),
    Limit("executorch", f"{_NO_CONFIG} cumsum, arange, full, bitwise_not or rounding division on "
          "data from the input (a grid built from the input size alone, as EdgeNeXt's positional "
          "encoding, is folded into a constant)",
          ops=r"cumsum|arange|_full_|bitwise_not|div_tensor_mode"),
    Limit("executorch", f"{_NO_CONFIG} sum, nor pow beyond squares (a 2-norm, as in EdgeNeXt's "
          "cross-covariance attention, is rewritten as a mean and a square root)", ops=r"sum_dim|pow_"),
    Limit("tflite", "LiteRT 2.3's XNNPACK delegate has no nearest-neighbour resize (bilinear only)",
          ops=r"^RESIZE_NEAREST_NEIGHBOR$"),
    Limit("tflite", "LiteRT 2.3's XNNPACK delegate takes AVERAGE_POOL_2D in float only, and the TF "
          "quantizer keeps it int8 even when denylisted", ops=r"^AVERAGE_POOL_2D$"),
    Limit("tflite", "onnx2tf 1.29.24, the newest for Python 3.11, could not build its Keras graph for this "
          "model (its NCHW→NHWC guesses fail on this graph)", reason=r"onnx2tf"),
)


def explain(cell: dict[str, Any]) -> list[Limit]:
    """The known limits that explain a failed cell, or every compute op a cell left outside
    XNNPACK; [] when anything is unexplained (a missed speed or parity goal is ours to explain)."""
    mine = [lim for lim in LIMITS if lim.target == cell["target"]]
    if cell["status"] == "fail":
        found = [lim for lim in mine if lim.reason and re.search(lim.reason, cell["reason"] or "")]
        return found[:1]
    ops = list(cell["compute_ops_left"] or {})
    if cell["status"] != "warn" or not ops:
        return []
    per_op = [[lim for lim in mine if lim.ops and re.search(lim.ops, op)] for op in ops]
    if not all(per_op):
        return []
    return list(dict.fromkeys(lim for found in per_op for lim in found))
