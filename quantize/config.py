"""Quantization recipes as frozen dataclasses (torchao style): the config says *what*, the
handler registered for its type (quantize/__init__.py) says *how*. QAT wraps PTQ: same knobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.errors import EdgeError

OBSERVERS = ("minmax", "histogram", "percentile")


@dataclass(frozen=True)
class PTQConfig:
    """Post-training static INT8: int8 per-channel symmetric weights, int8 activations."""

    calib_size: int = 128
    # activation observer: minmax | histogram | percentile; None = the target's default
    # (XNNPACK: histogram; Core ML's quantizer: minmax), and the manifest records the one used.
    observer: str | None = None
    percentile: float = 99.99  # used by the percentile observer
    per_channel: bool = True
    keep_float: tuple[str, ...] = ()  # module-path patterns (fnmatch) left in float
    # Leave the classifier head (the modules after the last stage: conv_head, act, classifier, ...)
    # in float. Why: fbnetv3_b's post-pool conv_head + hard-swish has a few channels 100x larger than
    # the rest; one per-tensor int8 scale zeroes the others, and logit SQNR falls from ~18 dB to
    # ~2 dB in that one op. It runs on a 1x1 map, so float costs ~1% of the MACs.
    float_head: bool = True
    seed: int = 0
    calib_batch: int = 16

    def __post_init__(self) -> None:
        if self.calib_size < 1:
            raise EdgeError(f"calibration size must be at least 1, got {self.calib_size}")
        if self.observer is not None and self.observer not in OBSERVERS:
            raise EdgeError(f"unknown observer {self.observer!r}; choose one of {', '.join(OBSERVERS)}")
        if not 50.0 < self.percentile <= 100.0:
            raise EdgeError(f"percentile must be in (50, 100], got {self.percentile}")


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training; the PTQ config sets the quantizer, observers and float layers."""

    ptq: PTQConfig = field(default_factory=PTQConfig)
    steps: int = 200
    lr: float = 1e-4
    freeze_bn_after: int = 100
    freeze_observers_after: int = 150
    temperature: float = 2.0
