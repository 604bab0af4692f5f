"""Activation observers beyond torchao's: a percentile observer that clips rare outliers."""

from __future__ import annotations

from typing import Any

import torch
from torchao.quantization.pt2e import MinMaxObserver

_MAX_SAMPLES = 1 << 20  # torch.quantile's input limit is 16M; subsample big tensors


class PercentileObserver(MinMaxObserver):
    """Range = running mean over batches of the low/high percentiles of the values seen.

    Why: a few outliers (e.g. one huge activation before a hard-swish) stretch a min/max range
    and waste int8 levels on values that almost never occur.
    """

    def __init__(self, percentile: float = 99.99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.percentile = percentile
        self.register_buffer("batches", torch.tensor(0))

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = x_orig.detach().float().flatten()
        if x.numel() > _MAX_SAMPLES:
            # evenly spaced, in integers: float32 linspace rounds the last index past the end
            idx = torch.arange(_MAX_SAMPLES, dtype=torch.int64) * (x.numel() - 1) // (_MAX_SAMPLES - 1)
            x = x[idx]
        q = torch.tensor([1 - self.percentile / 100, self.percentile / 100])
        lo, hi = torch.quantile(x, q)
        n = int(self.batches)
        if n == 0:
            self.min_val.copy_(lo)
            self.max_val.copy_(hi)
        else:
            self.min_val.copy_((self.min_val * n + lo) / (n + 1))
            self.max_val.copy_((self.max_val * n + hi) / (n + 1))
        self.batches += 1
        return x_orig
