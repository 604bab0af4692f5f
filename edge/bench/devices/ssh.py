"""`ssh://user@host[:port]`: a Linux/macOS board reached with the system OpenSSH client.

Never trusts a host key silently: BatchMode (no prompts), StrictHostKeyChecking=yes and only the
known_hosts file given (default ~/.ssh/known_hosts). Every remote argument is quoted with
shlex.quote, so file names with spaces or `;` reach the runner as they are.
"""

from __future__ import annotations

import math
import re
import shlex
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from edge.bench.devices import register
from edge.bench.devices.base import BenchConfig, Device, Proc, last_line, run_process
from edge.errors import EdgeError
from edge.progress import say

_SAFE_TMP = re.compile(r"^/[A-Za-z0-9._/-]*edge-bench\.[A-Za-z0-9]+$")
_UNREACHABLE = ("Connection refused", "Connection timed out", "No route to host", "Could not resolve hostname",
                "Network is unreachable", "Operation timed out", "Connection closed by", "Connection reset")


@register
class SshDevice(Device):
    scheme = "ssh"
    url_form = "ssh://user@host[:port]"
    options = ("python", "identity", "known_hosts")

    def __init__(self, url: str, name: str | None = None, **options: str) -> None:
        super().__init__(url, name, **options)
        parts = urlsplit(url)
        if parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
            raise EdgeError(f"bad ssh device {url!r}: write ssh://user@host[:port]")
        try:
            port = parts.port
        except ValueError as exc:
            raise EdgeError(f"bad port in {url!r}") from exc
        self.user, self.host, self.port = parts.username, parts.hostname, port or 22
        for what, v in (("user", self.user), ("host", self.host)):
            if v is not None and (v.startswith("-") or not re.fullmatch(r"[A-Za-z0-9._:%-]+", v)):
                raise EdgeError(f"bad ssh {what} {v!r} in {url!r}")
        self.python_cmd = options.get("python") or "python3"
        self.identity = Path(options["identity"]).expanduser() if options.get("identity") else None
        self.known_hosts = Path(options.get("known_hosts") or "~/.ssh/known_hosts").expanduser()

    def default_name(self) -> str:
        return self.host if self.port == 22 else f"{self.host}:{self.port}"

    # --- ssh/scp command lines
    def _dest(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" if self.user else host

    def _opts(self, cfg: BenchConfig) -> list[str]:
        if not self.known_hosts.is_file():
            raise EdgeError(f"known_hosts file {self.known_hosts} does not exist: add {self.host}'s key to it "
                            f"(ssh-keyscan -p {self.port} {self.host}, after checking the fingerprint) or give "
                            "--known-hosts; edge never trusts a host key silently")
        if re.search(r"[\s\"']", str(self.known_hosts)):
            raise EdgeError(f"known_hosts path {self.known_hosts} has spaces or quotes, which ssh -o cannot take")
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"ConnectTimeout={max(1, math.ceil(cfg.connect_timeout))}"]
        if self.identity is not None:
            if not self.identity.is_file():
                raise EdgeError(f"ssh identity file {self.identity} does not exist")
            opts += ["-o", "IdentitiesOnly=yes", "-i", str(self.identity)]
        return opts

    def _fail(self, err: str, what: str) -> EdgeError:
        where = f"{self.host}:{self.port}"
        if "Host key verification failed" in err or "HOST IDENTIFICATION HAS CHANGED" in err:
            return EdgeError(f"{self.name}: the host key of {where} is not in {self.known_hosts} (or differs from it); "
                             f"check its fingerprint and add it (ssh-keyscan -p {self.port} {self.host}) — edge never "
                             "trusts a host key silently")
        if any(s in err for s in _UNREACHABLE):
            return EdgeError(f"{self.name}: cannot reach {where}: {last_line(err)}")
        if "Permission denied" in err:
            return EdgeError(f"{self.name}: ssh login to {self._dest()} port {self.port} was refused "
                             f"(give --identity KEY or add your key to the device): {last_line(err)}")
        return EdgeError(f"{self.name}: {what} failed: {last_line(err) or 'no message'}")

    def _ssh(self, command: str, cfg: BenchConfig, timeout: float, what: str) -> Proc:
        argv = ["ssh", *self._opts(cfg), "-p", str(self.port), "--", self._dest(), command]
        try:
            p = run_process(argv, timeout, f"{self.name}: {what}")
        except EdgeError as exc:
            raise EdgeError(f"{exc} (device {self.host}:{self.port})") from exc
        if p.rc == 255:  # ssh's own failure (the remote command's status otherwise)
            raise self._fail(p.err, what)
        return p

    def _scp(self, src: str, dst: str, cfg: BenchConfig, what: str, recursive: bool = False) -> Proc:
        argv = ["scp", "-q", *(["-r"] if recursive else []), *self._opts(cfg), "-P", str(self.port), "--", src, dst]
        return run_process(argv, cfg.connect_timeout + cfg.run_timeout, f"{self.name}: {what}")

    # --- transport
    def connect(self, cfg: BenchConfig) -> None:
        self._ssh("true", cfg, cfg.connect_timeout + 5, "connecting")

    def make_temp_dir(self, cfg: BenchConfig) -> str:
        p = self._ssh('mktemp -d "${TMPDIR:-/tmp}/edge-bench.XXXXXX"', cfg, cfg.connect_timeout + 30,
                      "making a temporary folder")
        path = p.out.strip()
        if p.rc != 0 or not _SAFE_TMP.match(path):
            raise EdgeError(f"{self.name}: cannot make a temporary folder on the device: "
                            f"{last_line(p.err) or path or 'no output'}")
        return path

    def push(self, local: Path, remote_dir: str, cfg: BenchConfig) -> None:
        # The destination folder is mktemp's (checked safe above); the file keeps its own name,
        # which scp carries in its protocol, never through a remote shell.
        p = self._scp(str(local), f"{self._dest()}:{shlex.quote(remote_dir)}/", cfg, f"copying {local.name}",
                      recursive=local.is_dir())
        if p.rc != 0:
            raise self._fail(p.err, f"copying {local.name} to the device")

    def execute(self, argv: list[str], cwd: str, cfg: BenchConfig) -> Proc:
        command = f"cd {shlex.quote(cwd)} && {shlex.join(argv)}"
        return self._ssh(command, cfg, cfg.connect_timeout + cfg.run_timeout, "running the benchmark")

    def pull_text(self, remote: str, cfg: BenchConfig) -> str | None:
        with tempfile.TemporaryDirectory(prefix="edge-bench-pull.") as tmp:
            local = Path(tmp) / "result.json"
            p = self._scp(f"{self._dest()}:{shlex.quote(remote)}", str(local), cfg, "fetching the result")
            if p.rc != 0 or not local.is_file():
                return None
            return local.read_text(encoding="utf-8")

    def remove(self, remote_dir: str, cfg: BenchConfig) -> None:
        if _SAFE_TMP.match(remote_dir):
            try:
                self._ssh(f"rm -rf -- {shlex.quote(remote_dir)}", cfg, cfg.connect_timeout + 30, "cleaning up")
            except EdgeError as exc:  # the run's own error (if any) is the one to report
                say(f"warning: could not remove {remote_dir} on {self.name}: {exc}")
