"""The real `edge` entry point, one subprocess per command (every other CLI test runs in-process):
start-up stays lean, exit statuses are 0/2 as documented, and every exporter runs in a fresh
network namespace (`unshare -n`), so an export that reaches for the network fails here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IMAGENET, ROOT, assert_one_line_error

HEAVY = ("torch", "executorch", "tensorflow", "coremltools", "timm", "onnx", "torchao", "ai_edge_litert")
TINY = ["--model", "test_efficientnet", "--weights", "random", "--input-size", "32"]  # timm's own test net
# what the libraries print when their output reaches the console (TensorFlow, absl, ExecuTorch's
# C++ runtime, torch's and Python's warnings)
THIRD_PARTY = re.compile(r"^[WIEF]\d{4} |cpuinfo|TensorSpec|Saved artifact|absl|[Ww]arning|tensorflow"
                         r"|\w+\.cpp:\d+\]")


def commands() -> list[str]:
    from edge.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[arg-type]


def edge_proc(*args: str | Path, prefix: tuple[str, ...] = (), timeout: int = 600,
              quiet: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGE_QUIET": "1" if quiet else "0", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*prefix, sys.executable, "-m", "edge.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=timeout)


@pytest.mark.parametrize("command", commands())
def test_help_of_every_command_imports_nothing_heavy(command: str) -> None:
    code = (f"import sys\nfrom edge.cli import main\ntry:\n    main([{command!r}, '--help'])\n"
            f"except SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout[-2000:]


@pytest.mark.parametrize(("args", "pattern"), [
    (["export", "executorch", *TINY, "--precision", "int8"], "--calib DIR is needed"),
    (["report", *TINY, "--targets", "executorch", "--precisions", "fp32", "--data", "/nonexistent/images"],
     "does not exist"),
    (["bench", "/nonexistent/model.pte"], "does not exist"),
    (["qat", *TINY, "--target", "executorch", "--data", "/nonexistent/images", "--steps", "2",
      "--out", "/tmp/edge-never-written.pt"], "does not exist"),
    (["finetune", *TINY, "--data", "/nonexistent/images", "--out", "/tmp/edge-never-written.safetensors"],
     "does not exist"),
    (["demo", "--weights", "nope"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(args: list[str], pattern: str) -> None:
    assert args[0] in commands()
    assert_one_line_error(edge_proc(*args), pattern)  # type: ignore[arg-type]


def _netns_prefix() -> tuple[str, ...]:
    """A fresh network namespace (only a loopback that is down): root may create one; others need
    an unprivileged user namespace (-r)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) not found")
    prefix = (unshare, "-n") if os.geteuid() == 0 else (unshare, "-rn")
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        msg = f"cannot create a network namespace here: {probe.stderr.strip()}"
        if os.environ.get("EDGE_REQUIRE_SYSDEPS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return prefix


def _offline_targets() -> list[tuple[str, str]]:
    """Every registered target with the precision whose path does the most (int8: calibration and
    the quantizer, or the converter's own calibration)."""
    from exporters import exporter_class, targets

    return [(t, "int8" if "int8" in exporter_class(t).precisions else exporter_class(t).precisions[0])
            for t in targets()]


@pytest.mark.parametrize(("target", "precision"), _offline_targets())
def test_export_runs_without_network(target: str, precision: str, tmp_path: Path) -> None:
    """`edge export` in a fresh network namespace: no download, no telemetry, no retry loop; the
    artifact and its manifest are written and verified as anywhere else."""
    prefix = _netns_prefix()
    probe = subprocess.run([*prefix, sys.executable, "-c",
                            "import socket; socket.create_connection(('1.1.1.1', 443), timeout=3)"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "unreachable" in probe.stderr.lower(), probe.stderr  # isolated indeed
    res = edge_proc("export", target, *TINY, "--precision", precision, "--calib", IMAGENET, "--calib-size", "8",
                    "--eval-size", "4", "--out", tmp_path, "--json", prefix=prefix, quiet=False)
    assert res.returncode == 0, res.stderr[-3000:]
    # the console carries edge's own lines only; the libraries' output went to the run's log
    foreign = [ln for ln in res.stderr.splitlines() if THIRD_PARTY.search(ln)]
    assert not foreign, foreign[:5]
    assert (tmp_path / "edge-export.log").is_file()
    rep = json.loads(res.stdout)
    man = json.loads(Path(rep["manifest"]).read_text())
    assert man["target"] == target and man["precision"] == precision
    assert man["model"]["name"] == "test_efficientnet" and rep["parity"]["images"] == 4
