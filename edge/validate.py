"""Cheap checks of what the user typed, run before any heavy import, model load or file write.

Why: a command spends seconds importing torch and a toolchain and minutes converting or training;
a bad value found after that is work lost, and an output folder made before the check is litter.
So these look only at values and at the file system, and create nothing.
"""

from __future__ import annotations

import difflib
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

from edge.data import SUBPATH_SEP
from edge.errors import EdgeError


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def at_least(flag: str, value: float | None, minimum: float) -> None:
    """``value`` (None: not given) must be >= ``minimum``."""
    if value is not None and value < minimum:
        raise EdgeError(f"{flag} must be at least {minimum}, got {value}")


def positive(flag: str, value: float | None) -> None:
    """``value`` (None: not given) must be > 0."""
    if value is not None and not value > 0:
        raise EdgeError(f"{flag} must be positive, got {value}")


def input_file(path: Path | str, what: str) -> Path:
    """An existing regular file (a folder where a file is expected is said so)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise EdgeError(f"{what} {p} is a folder, not a file")
    if not p.is_file():
        raise EdgeError(f"{what} {p} does not exist")
    return p


def image_source(spec: str | Path, what: str) -> None:
    """A folder, or a .tar[.gz] archive (``::SUBDIR`` inside it is checked once extracted)."""
    text = str(spec)
    path = Path(text.split(SUBPATH_SEP, 1)[0]).expanduser()
    if not path.exists():
        raise EdgeError(f"image source {path} does not exist")
    if path.is_file() and not tarfile.is_tarfile(path):
        raise EdgeError(f"{what} {path} is neither a folder nor a .tar/.tar.gz archive")
    if SUBPATH_SEP in text and not path.is_file():
        if not (path / text.split(SUBPATH_SEP, 1)[1]).is_dir():
            raise EdgeError(f"{text.split(SUBPATH_SEP, 1)[1]!r} is not a folder inside {path}")


def image_args(sources: dict[str, str | None], classes: Path | None) -> None:
    """Image sources (flag -> value, None: not given) and the class list exist and fit their kind."""
    for flag, src in sources.items():
        if src:
            image_source(src, flag)
    if classes is not None:
        input_file(classes, "--classes file")


def _creatable(path: Path, what: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a writable folder."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise EdgeError(f"cannot create {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgeError(f"cannot create {what} {path}: {parent} is not writable")


def output_folder(path: Path | str, what: str = "output folder") -> None:
    """A folder that exists and is writable, or that could be created; nothing is created here."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise EdgeError(f"{what} {p} is a file, not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise EdgeError(f"{what} {p} is not writable")
        return
    _creatable(p, what)


def output_file(path: Path | str, what: str = "output file") -> None:
    """A file path that can be written: not a folder, in a folder that exists or could be created."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise EdgeError(f"{what} {p} is a folder, not a file")
    if p.exists():
        if not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK | os.X_OK):
            raise EdgeError(f"{what} {p} is not writable")
        return
    _creatable(p, what)
