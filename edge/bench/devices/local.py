"""`local`: this machine, through the same push/run/pull steps as a remote device (the runner runs
from a temporary folder, by this Python unless `python=` says otherwise)."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from edge.bench.devices import register
from edge.bench.devices.base import BenchConfig, Device, Proc
from edge.errors import EdgeError


@register
class LocalDevice(Device):
    scheme = "local"
    url_form = "local"
    options = ("python",)

    def __init__(self, url: str, name: str | None = None, **options: str) -> None:
        super().__init__(url, name, **options)
        if url != "local":
            raise EdgeError(f"the local device is written 'local', not {url!r}")
        self.python_cmd = options.get("python") or shlex.quote(sys.executable)

    def default_name(self) -> str:
        return socket.gethostname()

    def connect(self, cfg: BenchConfig) -> None:
        return None

    def make_temp_dir(self, cfg: BenchConfig) -> str:
        return tempfile.mkdtemp(prefix="edge-bench.")

    def push(self, local: Path, remote_dir: str, cfg: BenchConfig) -> None:
        dest = Path(remote_dir) / local.name
        if local.is_dir():
            shutil.copytree(local, dest)
        else:
            shutil.copyfile(local, dest)

    def execute(self, argv: list[str], cwd: str, cfg: BenchConfig) -> Proc:
        # No shell: every argument reaches the runner as it is.
        try:
            p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=cfg.run_timeout,
                               stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            return Proc(127, "", f"{argv[0]}: not found")
        except subprocess.TimeoutExpired as exc:
            raise EdgeError(f"{self.name}: the run timed out after {cfg.run_timeout:g} s") from exc
        return Proc(p.returncode, p.stdout, p.stderr)

    def pull_text(self, remote: str, cfg: BenchConfig) -> str | None:
        p = Path(remote)
        return p.read_text(encoding="utf-8") if p.is_file() else None

    def remove(self, remote_dir: str, cfg: BenchConfig) -> None:
        shutil.rmtree(remote_dir, ignore_errors=True)
