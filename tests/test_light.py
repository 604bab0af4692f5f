"""`import edge` and `edge --help` stay light: no torch, executorch, tensorflow or coremltools."""

import subprocess
import sys
import time

HEAVY = ("torch", "executorch", "tensorflow", "coremltools", "timm", "onnx", "torchao", "ai_edge_litert")


def test_import_edge_pulls_no_heavy_backend() -> None:
    code = (
        "import sys, edge, edge.cli, exporters, quantize; edge.cli.build_parser();"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_is_fast() -> None:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "edge.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "export" in res.stdout
    assert time.perf_counter() - t0 < 2.0


def test_missing_optional_dependency_names_install_hint() -> None:
    from edge._deps import require
    from edge.errors import EdgeError

    try:
        require("surely_not_installed_pkg", "testing")
    except EdgeError as exc:
        assert "pip install surely_not_installed_pkg" in str(exc)
    else:
        raise AssertionError("require() accepted a missing package")


def test_per_image_sqnr_tells_a_few_outlier_images_from_uniform_noise() -> None:
    """The same pooled SQNR from two error patterns: noise on every image, or a few images wrecked.
    The per-image median and the worst 1 %'s share tell them apart."""
    import numpy as np

    from edge.metrics import compare, sqnr_db

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((400, 10))
    uniform = ref + 0.2 * rng.standard_normal(ref.shape)
    outliers = ref.copy()
    outliers[:4] += rng.standard_normal((4, 10)) * np.sqrt(400 / 4) * 0.2  # same error power, in 4 images
    assert abs(sqnr_db(ref, uniform) - sqnr_db(ref, outliers)) < 1.5
    u, o = compare([ref], [uniform]), compare([ref], [outliers])
    assert u["error_share_worst_1pct"] < 0.05 and o["error_share_worst_1pct"] > 0.95
    assert abs(u["image_sqnr_db_median"] - u["sqnr_db"]) < 2 and o["image_sqnr_db_median"] == float("inf")
