"""Shared fixtures. Exports are slow (tens of seconds), so artifacts are session-scoped and built
at small input sizes; real images come from ../shared/data beside the project root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT.parent / "shared" / "data").resolve()
IMAGENET = DATA / "imagenet-sample"
CIFAR = DATA / "cifar10.tar.gz"
SMALL = 64  # input side for the fast exports

os.environ.setdefault("EDGE_QUIET", "1")


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
