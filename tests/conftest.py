"""Shared fixtures. Exports are slow (tens of seconds), so artifacts are session-scoped and built
at small input sizes; real images come from ../shared/data beside the project root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT.parent / "shared" / "data").resolve()
IMAGENET = DATA / "imagenet-sample"
CIFAR = DATA / "cifar10.tar.gz"
SMALL = 64  # input side for the fast exports

os.environ.setdefault("EDGE_QUIET", "1")


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
    if not IMAGENET.is_dir() or not CIFAR.is_file():
        raise pytest.UsageError(f"the tests read real images from {DATA}; it is missing")


@pytest.fixture(scope="session")
def imagenet() -> Path:
    return IMAGENET


@pytest.fixture(scope="session")
def random_inputs():
    """fbnetv3_b with seeded random weights at 64 px, BN re-estimated on real images, 16 held out."""
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs

    spec = ModelSpec(weights="random", input_size=SMALL)
    return load_inputs(spec, str(IMAGENET), 32, eval_size=16, recalibrate_bn=True)


@pytest.fixture(scope="session")
def session_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


REFERENCE_STEPS = int(os.environ.get("EDGE_REFERENCE_STEPS", "1000"))


@pytest.fixture(scope="session")
def reference_weights() -> Path:
    """fbnetv3_b trained on CIFAR-10 at 32 px by `edge finetune`, cached outside the repo.

    Why trained weights: a random-weight fbnetv3_b is chaotic (40 dB of input noise leaves its
    logits at ~9 dB), so int8 fidelity measured on it says nothing about int8 itself.
    First use trains it (several minutes on 2 cores); later runs reuse the cached file.
    """
    from edge.finetune import FinetuneConfig, finetune, reference_checkpoint
    from edge.models import ModelSpec

    cfg = FinetuneConfig(epochs=REFERENCE_STEPS * 64 / 40000, max_images=40000, lr=3e-3, seed=0)
    path = reference_checkpoint("fbnetv3_b-cifar10-32px", cfg)
    if not path.is_file():
        finetune(ModelSpec(weights="random", input_size=32), f"{CIFAR}::cifar10/train", path, cfg)
    return path


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
