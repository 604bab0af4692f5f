"""`edge demo` (what `make demo` runs): `edge report` on embedded defaults.

Default (`--weights reference`): the trained fbnetv3_b reference (CIFAR-10, 32 px) and the labelled
CIFAR-10 images from the shared data folder beside the checkout (``../shared/data``, or
``$EDGE_DATA``): offline, with accuracy that means something. It calibrates on cifar10/train and
judges every artifact on held-out cifar10/test images. Why not ship the weights in the package: the
data folder is where this project keeps trained weights and images (the repository copies none of
it); a clone without it gets a clear error naming the other choices.

`--weights hub|auto|random`: fbnetv3_b.ra2_in1k on the committed ImageNet sample images
(edge/assets/sample_images): hub weights (downloaded if needed: the only network use, and only
when asked), the local hub cache else seeded random weights, or seeded random weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.models import DEFAULT_MODEL, ModelSpec
from edge.reference import REFERENCE_INPUT, cifar, data_root, missing, reference_weights
from edge.report.run import ReportConfig, run_report
from quantize import PTQConfig

SAMPLE_IMAGES = "assets/sample_images"
WEIGHTS = ("reference", "auto", "hub", "random")


@dataclass(frozen=True)
class DemoPlan:
    """What the demo measures: the model, the images, and how many of each."""

    spec: ModelSpec
    calib: str
    data: str | None
    calib_size: int
    eval_size: int
    recalibrate_bn: bool = False


def sample_images() -> Path:
    return Path(str(files("edge").joinpath(SAMPLE_IMAGES)))


def plan(weights: str) -> DemoPlan:
    """Cheap checks only (files exist), so a wrong choice fails before any heavy import."""
    if weights not in WEIGHTS:
        raise EdgeError(f"--weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    if weights != "reference":
        return DemoPlan(ModelSpec(name=DEFAULT_MODEL, weights=weights), str(sample_images()), None, 32, 16,
                        recalibrate_bn=weights == "random")
    gone = missing()
    if gone:
        raise EdgeError(f"the demo's trained reference and images are not in {data_root()} (missing "
                        f"{', '.join(p.name for p in gone)}): set EDGE_DATA to the shared data folder, or run "
                        "`edge demo --weights hub` (ImageNet weights, downloaded once)")
    return DemoPlan(ModelSpec(name="fbnetv3_b", weights=str(reference_weights()), input_size=REFERENCE_INPUT),
                    cifar("train"), cifar("test"), 64, 200)


def run_demo(out: Path, threads: int = 2, runs: int = 50, weights: str = "reference",
             targets: tuple[str, ...] = (), workers: int = 2) -> dict[str, Any]:
    """The report on the demo's images; ``targets`` () = every registered target."""
    p = plan(weights)
    recalibrate = p.recalibrate_bn
    if weights == "auto":
        from edge.models import load_model

        recalibrate = load_model(p.spec).weights_source.startswith("random")  # cheap: hub cache or not
    cfg = ReportConfig(targets=targets, precisions=("fp32", "int8"), quant=PTQConfig(calib_size=p.calib_size),
                       eval_size=p.eval_size, threads=threads, runs=runs, recalibrate_bn=recalibrate,
                       workers=workers, recipes=("dynamic",))  # the int8 that keeps the reference (README)
    report = run_report(p.spec, p.calib, p.data, out, cfg)
    if weights == "reference":
        report["weights"]["notes"].append("the trained CIFAR-10 reference of the shared data folder "
                                          "(see its README); `--weights hub` runs the ImageNet model")
    elif recalibrate:
        report["weights"]["notes"].append("seeded random weights: accuracy means nothing; `edge demo --weights "
                                          "hub` downloads the trained ones (the only network use)")
    return report
