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
