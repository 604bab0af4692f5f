"""Atomic writes: an artifact is either complete at its final path or absent.

Why: a crash or Ctrl-C half-way through an export must never leave a truncated `.pte` that a
later run (or a device) mistakes for a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.errors import EdgeError


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed and check we can write there, before any long work starts."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeError(f"cannot create output folder {path}: {exc.strerror or exc}") from exc
    if not path.is_dir():
        raise EdgeError(f"output path {path} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edge-probe-", dir=path)
    except OSError as exc:
        raise EdgeError(f"output folder {path} is not writable: {exc.strerror or exc}") from exc
    os.close(fd)
    os.unlink(probe)
    return path


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent)) / final.name
    try:
        yield tmp
        if not tmp.exists():
            raise EdgeError(f"internal error: nothing was written for {final}")
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_json(final: Path, obj: Any) -> None:
    write_bytes(final, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a folder's files in sorted order (for bundles like .mlpackage)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def size_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
