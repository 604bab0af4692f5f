"""`adb://SERIAL`: an Android device through the real `adb` client (`adb -s SERIAL push/shell/pull`).

The runner on the device is the user's (`--adb-runner`): LiteRT's `benchmark_model` binary, ExecuTorch's
`executor_runner` binary, the ExecuTorch minibench app (org.pytorch.minibench), or `python` (this
project's device_runner.py under a Python on the device, e.g. Termux). Their outputs are parsed into
the schema by edge.bench.formats; what a tool does not measure stays null.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path
from typing import Any

from edge.bench.devices import register
from edge.bench.devices.base import BenchConfig, Device, Proc, last_line, run_process
from edge.bench.formats import (
    ANDROID_FACTS_COMMAND,
    RunContext,
    parse_android_facts,
    parse_benchmark_model,
    parse_executor_runner,
    parse_minibench,
)
from edge.errors import EdgeError
from edge.progress import say

RUNNERS = ("benchmark_model", "executor_runner", "minibench", "python")
DEFAULT_PATHS = {"benchmark_model": "/data/local/tmp/benchmark_model",
                 "executor_runner": "/data/local/tmp/executor_runner"}
SUFFIXES = {"benchmark_model": (".tflite",), "executor_runner": (".pte",), "minibench": (".pte",),
            "python": (".pte", ".tflite")}
MINIBENCH = "org.pytorch.minibench"
_SAFE_TMP = re.compile(r"^/data/local/tmp/edge-bench\.[A-Za-z0-9]+$")


@register
class AdbDevice(Device):
    scheme = "adb"
    url_form = "adb://SERIAL"
    options = ("adb_runner", "adb_runner_path", "python")

    def __init__(self, url: str, name: str | None = None, **options: str) -> None:
        super().__init__(url, name, **options)
        self.serial = url.split("://", 1)[1]
        if not self.serial or self.serial.startswith("-") or not re.fullmatch(r"[A-Za-z0-9._:\-]+", self.serial):
            raise EdgeError(f"bad adb device {url!r}: write adb://SERIAL (see `adb devices`)")
        runner = options.get("adb_runner")
        if runner is None:
            raise EdgeError(f"{url}: say which runner is on the device: --adb-runner {'|'.join(RUNNERS)}")
        if runner not in RUNNERS:
            raise EdgeError(f"unknown --adb-runner {runner!r} (known: {', '.join(RUNNERS)})")
        self.runner_name = runner
        self.runner_path = options.get("adb_runner_path") or DEFAULT_PATHS.get(runner)
        self.python_cmd = options.get("python") or "python3"

    def default_name(self) -> str:
        return self.serial

    def _adb(self, args: list[str], timeout: float, what: str) -> Proc:
        return run_process(["adb", "-s", self.serial, *args], timeout, f"{self.name}: {what}")

    def _shell(self, command: str, timeout: float, what: str) -> Proc:
        return self._adb(["shell", command], timeout, what)

    def connect(self, cfg: BenchConfig) -> None:
        p = self._adb(["get-state"], cfg.connect_timeout + 10, "connecting")
        if p.rc != 0 or p.out.strip() != "device":
            state = last_line(p.err) or p.out.strip() or f"exit status {p.rc}"
            raise EdgeError(f"adb device {self.serial!r} is not available ({state}); connect it with USB debugging "
                            "on and check `adb devices`")

    def make_temp_dir(self, cfg: BenchConfig) -> str:
        p = self._shell("mktemp -d /data/local/tmp/edge-bench.XXXXXX", cfg.connect_timeout + 30, "mktemp")
        path = p.out.strip()
        if p.rc != 0 or not _SAFE_TMP.match(path):
            raise EdgeError(f"{self.name}: cannot make a temporary folder on the device: {last_line(p.err) or path}")
        return path

    def push(self, local: Path, remote_dir: str, cfg: BenchConfig) -> None:
        p = self._adb(["push", str(local), f"{remote_dir}/{local.name}"], cfg.run_timeout, f"pushing {local.name}")
        if p.rc != 0:
            raise EdgeError(f"{self.name}: adb push of {local.name} failed: {last_line(p.err) or last_line(p.out)}")

    def execute(self, argv: list[str], cwd: str, cfg: BenchConfig) -> Proc:
        return self._shell(f"cd {shlex.quote(cwd)} && {shlex.join(argv)}", cfg.run_timeout, "running the benchmark")

    def pull_text(self, remote: str, cfg: BenchConfig) -> str | None:
        p = self._shell(f"cat {shlex.quote(remote)}", cfg.connect_timeout + 30, "fetching the result")
        return p.out if p.rc == 0 else None

    def remove(self, remote_dir: str, cfg: BenchConfig) -> None:
        if not _SAFE_TMP.match(remote_dir):
            return
        try:
            self._shell(f"rm -rf {shlex.quote(remote_dir)}", cfg.connect_timeout + 30, "cleaning up")
        except EdgeError as exc:
            say(f"warning: could not remove {remote_dir} on {self.name}: {exc}")

    # --- runners
    def files_to_push(self, artifact: Path) -> list[Path]:
        files = super().files_to_push(artifact)
        return files if self.runner_name == "python" else files[:2]

    def bench(self, artifact: Path, cfg: BenchConfig) -> dict[str, Any]:
        if Path(artifact).suffix.lower() not in SUFFIXES[self.runner_name]:
            raise EdgeError(f"{self.name}: --adb-runner {self.runner_name} runs "
                            f"{'/'.join(SUFFIXES[self.runner_name])} files, not {Path(artifact).name}")
        return super().bench(artifact, cfg)

    def _context(self, artifact: Path, manifest: dict[str, Any], cfg: BenchConfig) -> RunContext:
        from edge.io import sha256_path

        facts = self._shell(ANDROID_FACTS_COMMAND, cfg.connect_timeout + 30, "reading device facts")
        outputs = (manifest.get("io") or {}).get("outputs") or []
        return RunContext(artifact=artifact.name, device=parse_android_facts(facts.out, self.name),
                          threads=cfg.threads, warmup=cfg.warmup, runs=cfg.runs, target=manifest.get("target"),
                          precision=manifest.get("precision"), artifact_sha256=sha256_path(artifact),
                          expected_shapes=[[int(s) for s in o.get("shape", [])] for o in outputs])

    def run_pushed(self, artifact: Path, manifest: dict[str, Any], remote: str, cfg: BenchConfig) -> dict[str, Any]:
        if self.runner_name == "python":
            res = super().run_pushed(artifact, manifest, remote, cfg)
            facts = self._shell(ANDROID_FACTS_COMMAND, cfg.connect_timeout + 30, "reading device facts")
            res["device"]["emulated"] = parse_android_facts(facts.out, self.name)["emulated"]
            return res
        ctx = self._context(artifact, manifest, cfg)
        model = f"{remote}/{artifact.name}"
        if self.runner_name == "minibench":
            return self._minibench(remote, ctx, cfg)
        if self.runner_name == "benchmark_model":
            argv = [str(self.runner_path), f"--graph={model}", f"--num_runs={cfg.runs}",
                    f"--warmup_runs={cfg.warmup}", "--min_secs=0", "--warmup_min_secs=0", "--use_xnnpack=true",
                    "--report_peak_memory_footprint=true"]
            if cfg.threads:
                argv.append(f"--num_threads={cfg.threads}")
            p = self.execute(argv, remote, cfg)
            return parse_benchmark_model(p.out + "\n" + p.err, ctx)
        argv = [str(self.runner_path), f"--model_path={model}", f"--num_executions={cfg.warmup + cfg.runs}"]
        if cfg.threads:
            argv.append(f"--cpu_threads={cfg.threads}")
        p = self.execute(argv, remote, cfg)
        return parse_executor_runner(p.out + "\n" + p.err, ctx)

    def _minibench(self, remote: str, ctx: RunContext, cfg: BenchConfig) -> dict[str, Any]:
        results = "files/benchmark_results.json"
        self._shell(f"run-as {MINIBENCH} rm -f {results}", 30, "clearing old minibench results")
        start = (f"am start -W -S -n {MINIBENCH}/{MINIBENCH}.BenchmarkActivity --es model_dir {shlex.quote(remote)} "
                 f"--ei num_iter {cfg.runs} --ei num_warm_up_iter {cfg.warmup}")
        p = self._shell(start, cfg.connect_timeout + 60, "starting minibench")
        if p.rc != 0 or "Error" in p.out:
            raise EdgeError(f"{self.name}: cannot start {MINIBENCH} (is the minibench app installed?): "
                            f"{last_line(p.err) or last_line(p.out)}")
        deadline = time.monotonic() + cfg.run_timeout
        while time.monotonic() < deadline:  # the activity writes its results when it finishes
            p = self._shell(f"run-as {MINIBENCH} cat {results}", 30, "reading minibench results")
            if p.rc == 0 and p.out.strip().startswith("["):
                return parse_minibench(p.out, ctx)
            time.sleep(1.0)
        raise EdgeError(f"{self.name}: minibench wrote no {results} within {cfg.run_timeout:g} s")


