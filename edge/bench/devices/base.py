"""One interface for every way of reaching a device. A transport makes a temporary folder on the
device, pushes the artifact, its manifest and the runner, runs it, pulls the JSON result, and
removes what it pushed — also when something failed on the way."""

from __future__ import annotations

import json
import shlex
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edge.errors import EdgeError, first_line
from edge.manifest import manifest_path

RUNNER = Path(__file__).resolve().parents[1] / "device_runner.py"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class BenchConfig:
    """How each artifact is run; the same for every device of one `edge bench`."""

    threads: int = 2
    runs: int = 20
    warmup: int = 3
    connect_timeout: float = 10.0  # seconds to reach the device
    run_timeout: float = 600.0  # seconds for one artifact's whole run on the device

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0 or self.threads < 0:
            raise EdgeError("--runs must be at least 1, --warmup and --threads at least 0")
        if self.connect_timeout <= 0 or self.run_timeout <= 0:
            raise EdgeError("timeouts must be positive")


@dataclass
class Proc:
    rc: int
    out: str
    err: str


def check_artifact(artifact: Path) -> dict[str, Any]:
    """The artifact and its manifest exist here; returns the manifest."""
    if not artifact.exists():
        raise EdgeError(f"artifact {artifact} does not exist")
    man = manifest_path(artifact)
    if not man.is_file():
        raise EdgeError(f"{artifact} has no manifest beside it ({man.name}); export it with `edge export`")
    try:
        data = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EdgeError(f"manifest {man} is unreadable: {first_line(exc)}") from exc
    if not isinstance(data, dict):
        raise EdgeError(f"manifest {man} is not a JSON object")
    return data


def parse_result(text: str | None, stdout: str) -> dict[str, Any] | None:
    """The runner's JSON: the pulled result file, else the last JSON line of its stdout."""
    for candidate in ([text] if text else []) + stdout.splitlines()[::-1]:
        candidate = candidate.strip()
        if candidate.startswith("{"):
            try:
                obj = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("schema") == "edge.bench/1":
                return obj
    return None


def run_process(argv: Sequence[str], timeout: float, what: str, stdin: Any = None) -> Proc:
    """Run a host command (ssh, scp, adb, python) with a timeout; a missing tool is an EdgeError."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                           stdin=stdin or subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise EdgeError(f"{what}: {argv[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise EdgeError(f"{what}: timed out after {timeout:g} s") from exc
    return Proc(p.returncode, p.stdout, p.stderr)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


class Device(ABC):
    """A device reached by URL; subclasses register a scheme in edge.bench.devices."""

    scheme: ClassVar[str]
    url_form: ClassVar[str]  # how a URL of this transport is written, for help and errors
    options: ClassVar[tuple[str, ...]] = ()  # the per-device options this transport takes
    runner_name: str = "python"

    def __init__(self, url: str, name: str | None = None, **options: str) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise EdgeError(f"{url}: option(s) {', '.join(unknown)} do not apply to {self.scheme} devices "
                            f"(it takes: {', '.join(self.options) or 'none'})")
        self.url = url
        self.label = name

    @property
    def name(self) -> str:
        """The device label in results (given, else what the URL names)."""
        return self.label or self.default_name()

    def default_name(self) -> str:
        return self.url

    # --- what each transport provides
    @abstractmethod
    def connect(self, cfg: BenchConfig) -> None:
        """Check the device answers, within cfg.connect_timeout (clear EdgeError otherwise)."""

    @abstractmethod
    def make_temp_dir(self, cfg: BenchConfig) -> str: ...

    @abstractmethod
    def push(self, local: Path, remote_dir: str, cfg: BenchConfig) -> None: ...

    @abstractmethod
    def execute(self, argv: list[str], cwd: str, cfg: BenchConfig) -> Proc:
        """Run argv on the device in ``cwd`` (each argument quoted where a shell is involved)."""

    @abstractmethod
    def pull_text(self, remote: str, cfg: BenchConfig) -> str | None:
        """A small text file from the device, or None when it is not there."""

    @abstractmethod
    def remove(self, remote_dir: str, cfg: BenchConfig) -> None: ...

    def python(self) -> list[str]:
        return shlex.split(getattr(self, "python_cmd", "python3"))

    # --- the shared flow
    def bench(self, artifact: Path, cfg: BenchConfig) -> dict[str, Any]:
        """Run one artifact; returns the runner's result (ok true or false). Transport problems
        (unreachable, unknown host key, timeouts, no result) raise EdgeError."""
        artifact = Path(artifact)
        manifest = check_artifact(artifact)
        self.connect(cfg)
        remote = self.make_temp_dir(cfg)
        try:
            for f in self.files_to_push(artifact):
                self.push(f, remote, cfg)
            return self.run_pushed(artifact, manifest, remote, cfg)
        finally:
            self.remove(remote, cfg)

    def files_to_push(self, artifact: Path) -> list[Path]:
        return [artifact, manifest_path(artifact), RUNNER]

    def run_pushed(self, artifact: Path, manifest: dict[str, Any], remote: str, cfg: BenchConfig) -> dict[str, Any]:
        """Default: the Python runner."""
        argv = [*self.python(), RUNNER.name, artifact.name, "--threads", str(cfg.threads), "--runs", str(cfg.runs),
                "--warmup", str(cfg.warmup), "--out", RESULT_FILE, "--device-name", self.name]
        proc = self.execute(argv, remote, cfg)
        res = parse_result(self.pull_text(f"{remote}/{RESULT_FILE}", cfg), proc.out)
        if res is None:
            why = last_line(proc.err) or last_line(proc.out) or f"exit status {proc.rc}"
            if proc.rc == 127:
                why = f"the device has no {self.python()[0]!r} ({why}); give --python"
            raise EdgeError(f"{self.name}: the runner gave no result: {why}")
        return res
