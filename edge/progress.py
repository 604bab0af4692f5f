"""edge's own console: status lines, progress bars and results, kept apart from what third-party
libraries print.

Why: TensorFlow, absl, ExecuTorch's C++ runtime, coremltools and torch write hundreds of lines
(to file descriptors 1 and 2, below Python). Inside ``console(...)`` both descriptors go to a
per-run log file; edge's own lines go to the terminal through ``say``/``tell``/``bar``/``emit``,
which write to the streams the run started with. ``-v`` turns the capture off.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


@dataclass
class _Streams:
    out: TextIO
    err: TextIO


_OWN: list[_Streams] = []  # the innermost console's streams (a stack: consoles may nest in tests)


def _out() -> TextIO:
    return _OWN[-1].out if _OWN else sys.stdout


def _err() -> TextIO:
    return _OWN[-1].err if _OWN else sys.stderr


def quiet() -> bool:
    return os.environ.get("EDGE_QUIET") == "1"


def say(msg: str) -> None:
    """A status line (one per stage) on stderr, so stdout stays for results; off with EDGE_QUIET=1."""
    if not quiet():
        print(msg, file=_err(), flush=True)


def tell(msg: str) -> None:
    """A line the user must see whatever EDGE_QUIET says: gate results, warnings, where files went."""
    print(msg, file=_err(), flush=True)


def emit(text: str) -> None:
    """The command's result on stdout (a table, or JSON with --json)."""
    print(text, file=_out(), flush=True)


class _Lines:
    """Progress as plain lines when stderr is not a terminal (CI logs, pipes): about every 25 %
    once the work has run a while, and the end, instead of carriage-return redraws."""

    QUIET_S = 2.0  # work done sooner than this gets only its end line

    def __init__(self, total: int | None, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit, self.n, self.t0 = total, desc, unit, 0, time.perf_counter()
        self.next_mark = 0.25
        self.postfix = ""

    def __enter__(self) -> _Lines:
        return self

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self.n < self.total and self.n / self.total >= self.next_mark:
            if time.perf_counter() - self.t0 < self.QUIET_S:
                return
            tell(f"{self.desc}: {self.n}/{self.total} {self.unit}{self.postfix}")
            self.next_mark = (int(self.n / self.total * 4) + 1) / 4

    def set_postfix(self, **values: Any) -> None:
        """tqdm's figures beside the count (a loss, say), shown on the next line printed."""
        self.postfix = " (" + ", ".join(f"{k} {v}" for k, v in values.items()) + ")"

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            tell(f"{self.desc}: {self.n} {self.unit} in {time.perf_counter() - self.t0:.1f} s{self.postfix}")


def bar(total: int | None = None, desc: str | None = None, unit: str = "it", **kw: Any) -> Any:
    """A tqdm bar on a terminal, plain lines elsewhere; nothing without a description or with EDGE_QUIET=1."""
    from tqdm import tqdm

    err = _err()
    if desc is not None and not quiet() and not _isatty(err):
        return _Lines(total, desc, unit)
    disable = desc is None or quiet()
    return tqdm(total=total, desc=desc, unit=unit, disable=disable, file=err, leave=False, dynamic_ncols=True, **kw)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _own_copy(stream: TextIO, fd: int) -> tuple[TextIO, bool]:
    """The stream edge keeps writing to while ``fd`` is redirected: a duplicate of ``fd`` when the
    stream is the process's real one, else the stream itself (an in-process caller's capture)."""
    try:
        real = stream.fileno() == fd
    except (AttributeError, ValueError, io.UnsupportedOperation):
        real = False
    if not real:
        return stream, False
    stream.flush()
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8"), True


@dataclass
class ConsoleLog:
    """Where the third-party output of this run is (None with -v: it went to the terminal)."""

    path: Path | None


@contextlib.contextmanager
def console(verbose: bool = False) -> Iterator[ConsoleLog]:
    """Send file descriptors 1 and 2 (and Python's sys.stdout/sys.stderr) to a log file for the
    block; edge's own output keeps the streams it had. The log starts in the temporary folder
    (nothing is written into an output folder before the run has validated it); ``keep_log``
    moves it next to the results."""
    log = ConsoleLog(None)
    if verbose:
        yield log
        return
    fd, name = tempfile.mkstemp(prefix="edge-", suffix=".log")
    log.path = Path(name)
    own_out, dup_out = _own_copy(sys.stdout, 1)
    own_err, dup_err = _own_copy(sys.stderr, 2)
    saved = {1: os.dup(1), 2: os.dup(2)}
    py_out, py_err = sys.stdout, sys.stderr
    sink = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    _OWN.append(_Streams(own_out, own_err))
    try:
        for target in (1, 2):
            os.dup2(fd, target)
        sys.stdout = sys.stderr = sink
        yield log
    finally:
        sink.flush()
        sys.stdout, sys.stderr = py_out, py_err
        for target, copy in saved.items():
            os.dup2(copy, target)
            os.close(copy)
        _OWN.pop()
        sink.close()
        os.close(fd)
        for stream, dup in ((own_out, dup_out), (own_err, dup_err)):
            if dup:
                stream.close()


def keep_log(log: ConsoleLog, folder: Path | None, name: str) -> Path | None:
    """Move the run's log into ``folder`` (when it exists) as ``name``; an empty log is removed."""
    if log.path is None or not log.path.exists():
        return None
    if log.path.stat().st_size == 0:
        log.path.unlink()
        return None
    if folder is not None and folder.is_dir() and os.access(folder, os.W_OK):
        dest = folder / name
        try:
            os.replace(log.path, dest)
        except OSError:  # another file system: copy, then remove
            dest.write_bytes(log.path.read_bytes())
            log.path.unlink()
        return dest
    return log.path
