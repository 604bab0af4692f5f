"""`edge demo` (what `make demo` runs): `edge report` on embedded defaults.

fbnetv3_b.ra2_in1k with hub weights if they are in the local cache (`--weights hub` downloads
them; nothing else reaches the network), else seeded random weights with BatchNorm re-estimated on
the images — the report's header says which. Calibrates on the committed sample images
(edge/assets/sample_images, 48 ImageNet photos downscaled), exports fp32 and int8 for ExecuTorch,
TFLite and Core ML, and measures every artifact against float on the held-out sample images.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from edge.models import DEFAULT_MODEL, ModelSpec
from edge.report.run import ReportConfig, run_report
from quantize import PTQConfig

SAMPLE_IMAGES = "assets/sample_images"
CALIB_SIZE = 32  # of the 48 committed images; the other 16 are held out


def sample_images() -> Path:
    return Path(str(files("edge").joinpath(SAMPLE_IMAGES)))


def run_demo(out: Path, threads: int = 2, runs: int = 50, weights: str = "auto",
             targets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The report on the sample images; ``targets`` () = every registered target."""
    from edge.models import load_model

    spec = ModelSpec(name=DEFAULT_MODEL, weights=weights)
    random_weights = load_model(spec).weights_source.startswith("random")  # cheap: hub cache or not
    cfg = ReportConfig(targets=targets, precisions=("fp32", "int8"), quant=PTQConfig(calib_size=CALIB_SIZE),
                       eval_size=16, threads=threads, runs=runs, recalibrate_bn=random_weights)
    report = run_report(spec, str(sample_images()), None, out, cfg)
    if random_weights:
        report["weights"]["notes"].append("hub weights are not in the local cache; `edge demo --weights hub` "
                                          "downloads them (the only network use, and only when asked)")
    return report
