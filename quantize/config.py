"""Quantization recipes as frozen dataclasses (torchao style): the config says *what*, the
handler registered for its type (quantize/__init__.py) says *how*. QAT wraps PTQ: same knobs.
A config checks its own values; how many images a calibration uses is decided where the images
meet the target (exporters.base.Exporter.request)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.errors import EdgeError

# search: percentile ranges, then each widened as the output error says (quantize/range_search.py)
OBSERVERS = ("minmax", "histogram", "percentile", "search")
# static: every activation's int8 range fixed at calibration; dynamic: the inputs of convs and linears
# quantized at run time with the range of the image at hand, everything else float (quantize/quantizers.py)
ACTIVATIONS = ("static", "dynamic")


@dataclass(frozen=True)
class PTQConfig:
    """Post-training static INT8: int8 per-channel symmetric weights, int8 activations."""

    calib_size: int = 128
    # activation observer: minmax | histogram | percentile; None = the exporter's default_observer
    # (exporters.base.Exporter: percentile, and no target overrides it otherwise), and the manifest
    # records the one used.
    observer: str | None = None
    percentile: float = 99.99  # used by the percentile observer
    per_channel: bool = True
    keep_float: tuple[str, ...] = ()  # module-path patterns (fnmatch) left in float
    # Leave the classifier head (the modules after the last stage: conv_head, act, classifier, ...)
    # in float. Why: fbnetv3_b's post-pool conv_head + hard-swish has a few channels far larger than
    # the rest; one per-tensor int8 scale zeroes the others, and most of the logit SQNR is lost in
    # that one op (README). It runs on a 1x1 map, so float costs a small share of the MACs.
    float_head: bool = True
    seed: int = 0
    calib_batch: int = 16
    search_images: int = 64  # the first calibration images, for observer "search"
    activations: str = "static"
    # Depthwise convolutions left float (with static int8 activations around them). Why an option:
    # on x86, XNNPACK's int8 depthwise kernels run slower than its float ones (no int8 dot product
    # helps a depthwise conv), so there the model is faster with them float; on Arm they are not.
    float_depthwise: bool = False

    def __post_init__(self) -> None:
        if self.activations not in ACTIVATIONS:
            raise EdgeError(f"unknown activations {self.activations!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.activations == "dynamic" and self.observer is not None:
            raise EdgeError("--activations dynamic measures each image's ranges at run time: --observer "
                            f"{self.observer} does not apply")
        if self.calib_size < 1:
            raise EdgeError(f"calibration size must be at least 1, got {self.calib_size}")
        if self.observer is not None and self.observer not in OBSERVERS:
            raise EdgeError(f"unknown observer {self.observer!r}; choose one of {', '.join(OBSERVERS)}")
        if self.search_images < 1:
            raise EdgeError(f"search_images must be at least 1, got {self.search_images}")
        if not 50.0 < self.percentile <= 100.0:
            raise EdgeError(f"percentile must be in (50, 100], got {self.percentile}")


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training (docs/qat.md). The wrapped PTQ config keeps the same knobs
    (float head, keep-float patterns, per-channel weights, seed, the images that initialise the
    fake-quant ranges); the activation observer is the quantizer's own moving-average min/max
    fake-quant, whose ranges training adapts, so ``ptq.observer`` must stay None."""

    ptq: PTQConfig = field(default_factory=PTQConfig)
    steps: int = 300  # the cosine schedule's length; a run may stop early and resume
    lr: float = 5e-5
    batch_size: int = 32
    weight_decay: float = 0.0
    temperature: float = 2.0  # distillation softens teacher and student logits by this
    ce_weight: float = 0.5  # cross-entropy weight, applied only when the images carry labels
    # Why freeze early: the reference model's BatchNorm statistics are already right, and updating
    # them from 32-image batches moves them away faster than QAT gains (measured in docs/qat.md).
    freeze_bn_after: int = 0
    freeze_observers_after: int = 200  # fake-quant ranges fixed from this step on
    train_images: int = 4096  # seeded subset of the folder decoded into memory
    eval_images: int = 64  # held out from training, for the fidelity figures at the end

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.batch_size >= 2, f"batch size must be at least 2, got {self.batch_size}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.temperature > 0, f"temperature must be positive, got {self.temperature}"),
            (self.ce_weight >= 0, f"cross-entropy weight must be >= 0, got {self.ce_weight}"),
            (self.freeze_bn_after >= 0 and self.freeze_observers_after >= 0,
             "freeze steps must be >= 0"),
            (self.train_images >= 1 and self.eval_images >= 0, "train_images >= 1 and eval_images >= 0 needed"),
            (self.ptq.observer is None,
             f"QAT learns activation ranges with moving-average min/max fake-quant; observer "
             f"{self.ptq.observer!r} applies to PTQ only"),
        ]
        for ok, msg in checks:
            if not ok:
                raise EdgeError(msg)


@dataclass(frozen=True)
class AutoConfig:
    """Accuracy-controlled int8 (quantize/auto.py): PTQ with the fewest, cheapest units (stem,
    blocks, head) left float that bring top-1 agreement with float to ``target_agreement`` on the
    first ``search_images`` calibration images. The wrapped PTQ config gives every other knob."""

    ptq: PTQConfig = field(default_factory=PTQConfig)
    target_agreement: float = 0.99
    search_images: int = 128

    def __post_init__(self) -> None:
        if not 0.0 < self.target_agreement < 1.0:
            raise EdgeError(f"target agreement must be in (0, 1), got {self.target_agreement}")
        if self.search_images < 8:
            raise EdgeError(f"the auto mode needs at least 8 search images, got {self.search_images}")
        if self.ptq.observer == "search":
            raise EdgeError("--target-agreement and --observer search do not combine: choose one")
        if self.ptq.activations != "static":
            raise EdgeError("--target-agreement chooses float layers for static int8; --activations dynamic "
                            "has no static ranges to trade")

    @property
    def calib_size(self) -> int:
        return self.ptq.calib_size
