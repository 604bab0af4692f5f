"""Shared fixtures. Exports are slow (seconds to tens of seconds), so every artifact comes from one
session-scoped store keyed by its recipe and is built at small input sizes; real images come from
../shared/data beside the project root, and int8 fidelity is judged on the trained reference there.

Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`), session fixtures exist once per
worker: test modules that share heavy fixtures carry the same ``xdist_group`` mark so they run on
one worker, and each worker uses one thread for torch and TensorFlow (two workers, two cores).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from edge.reference import CIFAR_FILE, REFERENCE_FILE, data_root

ROOT = Path(__file__).resolve().parents[1]
DATA = data_root().resolve()
IMAGENET = DATA / "imagenet-sample"
CIFAR = DATA / CIFAR_FILE
REFERENCE = DATA / REFERENCE_FILE
SMALL = 64  # input side for the fast exports

os.environ.setdefault("EDGE_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, "1")


def require_tool(name: str, package: str) -> str:
    """Path of a system tool (from .ci/apt-packages.txt). Missing: skip here, fail in CI
    (EDGE_REQUIRE_SYSDEPS=1), so a test that needs a real tool never passes without it."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        msg = f"{name} not found: install the Debian package {package} (make sysdeps)"
        if os.environ.get("EDGE_REQUIRE_SYSDEPS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def pytest_configure(config: pytest.Config) -> None:
    missing = [p for p in (IMAGENET, CIFAR, REFERENCE) if not p.exists()]
    if missing:
        raise pytest.UsageError(f"the tests read real images and the trained reference from {DATA}; "
                                f"missing: {', '.join(p.name for p in missing)}")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


# --- the CLI, in-process ----------------------------------------------------------------------------

class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def edge_main(*args: str | Path) -> CliResult:
    """`edge ARGS…` run in this process (no torch import per call): exit status, stdout, stderr.
    One subprocess test per command (tests/test_cli.py) covers the real entry point."""
    from edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_one_line_error(res: CliResult, pattern: str) -> None:
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edge: error:")]
    assert len(lines) == 1 and pattern in lines[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr


# --- models and images --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def imagenet() -> Path:
    return IMAGENET


@pytest.fixture(scope="session")
def reference_weights() -> Path:
    """The trained CIFAR-10 reference from ../shared/data (sha256 checked): int8 fidelity means
    nothing on random weights, whose logits amplify any noise."""
    from edge.reference import reference_weights as checked

    return checked(check_sha256=True)  # an EdgeError names a missing or altered file


def _random_inputs(mode: str, calib: int, eval_size: int):
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs

    spec = ModelSpec(weights="random", input_size=SMALL, mode=mode)
    return load_inputs(spec, str(IMAGENET), calib, eval_size=eval_size, recalibrate_bn=True)


@pytest.fixture(scope="session")
def random_inputs():
    """fbnetv3_b with seeded random weights at 64 px, BN re-estimated on real images, 16 held out
    (structure and fp32 parity only)."""
    return _random_inputs("classifier", 32, 16)


@pytest.fixture(scope="session")
def random_embeddings():
    return _random_inputs("embeddings", 16, 8)


@pytest.fixture(scope="session")
def random_features():
    return _random_inputs("features", 16, 8)


@pytest.fixture(scope="session")
def tiny_inputs():
    """timm's own small test network (test_efficientnet: MBConv, SE, SiLU) at 32 px, random weights:
    for tests of plumbing (runners, transports, CLI) where the model does not matter."""
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs

    return load_inputs(ModelSpec(name="test_efficientnet", weights="random", input_size=32), str(IMAGENET), 8,
                       eval_size=4)


@pytest.fixture(scope="session")
def reference_inputs(reference_weights: Path):
    """The reference model, 256 calibration images from cifar10/train, 500 held-out cifar10/test images."""
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs

    spec = ModelSpec(weights=str(reference_weights), input_size=32)
    return load_inputs(spec, f"{CIFAR}::cifar10/train", 256, eval_data=f"{CIFAR}::cifar10/test", eval_size=500)


# --- one store of exported artifacts --------------------------------------------------------------------

class ArtifactStore:
    """Each distinct (inputs, target, precision, quantization recipe, options) is exported and
    verified once per session; every test file asks the store instead of exporting its own copy."""

    def __init__(self, root: Path, request: pytest.FixtureRequest) -> None:
        self.root, self.request = root, request
        self._done: dict[str, dict[str, Any]] = {}

    def get(self, inputs: str, target: str, precision: str, quant: Any = None,
            options: dict[str, str] | None = None) -> dict[str, Any]:
        """``inputs``: the name of an inputs fixture (random_inputs, reference_inputs, ...)."""
        from edge.pipeline import export_and_verify

        key = repr((inputs, target, precision, quant, sorted((options or {}).items())))
        if key not in self._done:
            out = self.root / hashlib.sha256(key.encode()).hexdigest()[:12]
            inp = self.request.getfixturevalue(inputs)
            self._done[key] = {**export_and_verify(target, inp, precision, out, quant, options=options),
                               "inputs": inp}
        return dict(self._done[key])


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> ArtifactStore:
    return ArtifactStore(tmp_path_factory.mktemp("artifacts"), request)


@pytest.fixture(scope="session")
def session_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def unconvertible_model(random_inputs):
    """The fbnetv3_b LoadedModel with its module swapped for one built on an op (svdvals) that
    neither ONNX/onnx2tf nor coremltools converts."""
    import dataclasses

    import torch

    class Svd(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svdvals(x.mean(1))

    return dataclasses.replace(random_inputs.model, module=Svd().eval(), output_names=["s"])
