"""The shared data folder and the trained reference model in it (its README says how it was made).

Why one place: the demo, the benchmarks and the tests judge int8 on the same trained weights and
the same images; random weights say nothing about int8.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.errors import EdgeError

REFERENCE_FILE = "fbnetv3_b-cifar10-32px.safetensors"
# fbnetv3_b trained on all of cifar10/train at 32 px (../shared/data/README.md)
REFERENCE_SHA256 = "1eda1b532f5c7242146d98f6aef33cd1690ffba1bfc49ff7921dd8a24f9d53b1"
REFERENCE_INPUT = 32
CIFAR_FILE = "cifar10.tar.gz"


def data_root() -> Path:
    """$EDGE_DATA, else ``shared/data`` beside the checkout."""
    env = os.environ.get("EDGE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def cifar(split: str) -> str:
    """An image source for ``split`` (train/test) of the shared CIFAR-10 archive."""
    return f"{data_root() / CIFAR_FILE}::cifar10/{split}"


def missing() -> list[Path]:
    root = data_root()
    return [p for p in (root / REFERENCE_FILE, root / CIFAR_FILE) if not p.is_file()]


def reference_weights(check_sha256: bool = True) -> Path:
    """The reference's weights file; an EdgeError says what is missing or altered."""
    path = data_root() / REFERENCE_FILE
    if not path.is_file():
        raise EdgeError(f"the trained reference {path} is missing: set EDGE_DATA to the shared data folder")
    if check_sha256:
        from edge.io import sha256_path

        digest = sha256_path(path)
        if digest != REFERENCE_SHA256:
            raise EdgeError(f"{path} is not the reference its README describes (sha256 {digest[:12]}…)")
    return path
