"""The native ExecuTorch runner (runner/edge_runner.cpp) built against the executorch wheel: its
JSON on real .pte files, its outputs against the Python ExecuTorch runtime on a real preprocessed
image, its failures, and the aarch64 cross-build run under qemu-user (correctness only: emulated
timings are never device timings)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, require_tool

from edge.runtimes import runtime_for

pytestmark = pytest.mark.xdist_group("tiny")  # shares the store's tiny artifacts with test_bench.py

SCHEMA_KEYS = {"schema", "artifact", "artifact_sha256", "target", "precision", "runner", "runtime",
               "runtime_version", "threads", "warmup", "runs", "load_ms", "first_run_ms", "latency_ms",
               "peak_rss_mb", "output", "device", "ok", "error"}
DEVICE_KEYS = {"name", "cpu", "cores", "os", "arch", "emulated"}
QEMU_SYSROOT = "/usr/aarch64-linux-gnu"


def _cmake() -> None:
    if not (ROOT / ".venv" / "bin" / "cmake").exists() and shutil.which("cmake") is None:
        msg = "cmake not found: pip install -r requirements.txt (cmake==…) or install cmake"
        if os.environ.get("EDGE_REQUIRE_SYSDEPS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


def _build(target: str) -> Path:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build_runner.sh"), target], capture_output=True,
                          text=True, timeout=900, env={**os.environ, "EDGE_NO_DOWNLOAD": "1"})
    assert proc.returncode == 0, f"build_runner.sh {target} failed:\n{proc.stderr[-3000:]}"
    binary = Path(proc.stdout.strip().splitlines()[-1])
    assert binary.is_file()
    return binary


@pytest.fixture(scope="session")
def host_runner() -> Path:
    _cmake()
    require_tool("g++", "g++")
    return _build("host")


@pytest.fixture(scope="session")
def aarch64_runner() -> Path:
    """Cross-built against the aarch64 wheel, which set-up (`make test`: scripts/build_runner.sh
    fetch) downloaded into ~/.cache/edge/wheels: the test itself never reaches the network."""
    _cmake()
    require_tool("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
    require_tool("qemu-aarch64", "qemu-user")
    return _build("aarch64")


@pytest.fixture(scope="session")
def native_ptes(artifacts) -> dict[str, Path]:
    """fp32 and int8 .pte of timm's small test net (32 px) with manifests, from the store: the
    runner's job (load, run, time, check shapes) does not depend on the network."""
    from quantize import PTQConfig

    return {"fp32": Path(artifacts.get("tiny_inputs", "executorch", "fp32")["artifact"]),
            "int8": Path(artifacts.get("tiny_inputs", "executorch", "int8", PTQConfig(calib_size=8))["artifact"])}


@pytest.fixture(scope="session")
def image_files(tiny_inputs, session_out: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """One real preprocessed held-out image, NCHW float32, as the raw little-endian file the runner reads."""
    x = np.ascontiguousarray(tiny_inputs.eval_images[:1], dtype="<f4")
    path = session_out / "native" / "image.f32"
    path.parent.mkdir(parents=True, exist_ok=True)
    x.tofile(path)
    return {"fp32": (path, x), "int8": (path, x)}


def run_native(binary: Path, *args: str | Path, qemu_cpu: str | None = None) -> tuple[int, dict]:
    cmd = [str(binary), *map(str, args)]
    env = dict(os.environ)
    if qemu_cpu:
        cmd = ["qemu-aarch64", "-cpu", qemu_cpu, "-L", QEMU_SYSROOT, *cmd]
        env["EDGE_EMULATED"] = "1"
    proc = subprocess.run(cmd, capture_output=True, timeout=600, env=env)
    # stdout must be the JSON line alone (UTF-8); stderr is the runtime's log, which may quote raw bytes
    lines = proc.stdout.decode().strip().splitlines()
    err = proc.stderr.decode(errors="replace")[-2000:]
    assert len(lines) == 1, f"expected one JSON line on stdout, got {proc.stdout!r}\nstderr: {err}"
    res = json.loads(lines[0])
    assert set(res) == SCHEMA_KEYS and set(res["device"]) == DEVICE_KEYS
    assert res["schema"] == "edge.bench/1" and res["runner"] == "native" and res["runtime"] == "executorch"
    return proc.returncode, res


def python_outputs(pte: Path, x: np.ndarray) -> list[np.ndarray]:
    return runtime_for(pte).load(pte, threads=2).run(x)


def read_outputs(path: Path, like: list[np.ndarray]) -> list[np.ndarray]:
    flat = np.fromfile(path, dtype="<f4")
    assert flat.size == sum(o.size for o in like)
    parts, at = [], 0
    for o in like:
        parts.append(flat[at:at + o.size].reshape(o.shape))
        at += o.size
    return parts


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_native_result_describes_the_run(host_runner: Path, native_ptes: dict[str, Path], precision: str) -> None:
    from edge.io import sha256_path

    pte = native_ptes[precision]
    man = json.loads(Path(f"{pte}.json").read_text())
    rc, res = run_native(host_runner, pte, "--threads", "2", "--runs", "5", "--warmup", "2", "--device-name", "ci")
    assert rc == 0 and res["ok"] is True and res["error"] is None, res
    assert res["artifact"] == pte.name and res["artifact_sha256"] == sha256_path(pte)
    assert res["precision"] == precision and res["target"] == "executorch"
    assert res["runtime_version"] == version("executorch")
    assert (res["threads"], res["runs"], res["warmup"]) == (2, 5, 2)
    assert res["output"] == {"shapes": [o["shape"] for o in man["io"]["outputs"]], "finite": True, "shape_ok": True}
    lat = res["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["max"] and lat["min"] <= lat["mean"] <= lat["max"]
    assert res["load_ms"] > 0 and res["first_run_ms"] > 0 and res["peak_rss_mb"] > 1
    dev = res["device"]
    assert dev["name"] == "ci" and dev["arch"] == platform.machine() and dev["emulated"] is False
    assert dev["cores"] == os.cpu_count() and dev["os"].startswith("Linux ") and dev["cpu"]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_native_outputs_equal_the_python_runtime(host_runner: Path, native_ptes: dict[str, Path], image_files,
                                                 session_out: Path, precision: str) -> None:
    """Same program, same kernels, same real image: the native runner must give what the Python
    ExecuTorch runtime gives (not merely "it ran")."""
    pte = native_ptes[precision]
    path, x = image_files[precision]
    out = session_out / "native" / f"host-{precision}.f32"
    rc, res = run_native(host_runner, pte, "--threads", "2", "--runs", "1", "--warmup", "1",
                         "--input-file", path, "--output-file", out)
    assert rc == 0 and res["ok"], res
    ref = python_outputs(pte, x)
    got = read_outputs(out, ref)
    for g, r in zip(got, ref, strict=True):
        assert res["output"]["shapes"] == [list(r.shape)]
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-5 * float(np.abs(r).max()))
    assert np.ptp(ref[0]) > 1e-6  # a real output, not a constant one that would match anything


def test_native_etdump_is_readable(host_runner: Path, native_ptes: dict[str, Path], session_out: Path) -> None:
    from executorch.devtools import Inspector

    dump = session_out / "native" / "fp32.etdp"
    dump.parent.mkdir(parents=True, exist_ok=True)  # not left to another test's fixture
    rc, res = run_native(host_runner, native_ptes["fp32"], "--runs", "3", "--warmup", "1", "--etdump", dump)
    assert rc == 0 and res["ok"], res
    inspector = Inspector(etdump_path=str(dump))
    execute = [b for b in inspector.event_blocks if b.name == "Execute"]
    assert execute, [b.name for b in inspector.event_blocks]
    names = {ev.name for b in execute for ev in b.events}
    assert "Method::execute" in names, names
    method = next(ev for b in execute for ev in b.events if ev.name == "Method::execute")
    assert len(method.perf_data.raw) == 4  # warm-up + 3 timed runs, each recorded


def test_native_without_manifest_checks_against_the_program(host_runner: Path, native_ptes: dict[str, Path],
                                                            tmp_path: Path) -> None:
    bare = tmp_path / "bare.pte"
    shutil.copyfile(native_ptes["fp32"], bare)
    rc, res = run_native(host_runner, bare, "--runs", "1", "--warmup", "0")
    assert rc == 0 and res["ok"] and res["output"]["shape_ok"] is True and res["output"]["shapes"] == [[1, 1000]]
    assert res["precision"] is None  # not known without the manifest: null, not guessed
    assert res["first_run_ms"] == res["latency_ms"]["p50"]  # --warmup 0: the first run is the timed run


def _failure(binary: Path, *args: str | Path) -> str:
    rc, res = run_native(binary, *args)
    assert rc != 0 and res["ok"] is False and res["latency_ms"]["p50"] is None, res
    assert res["error"] and "\n" not in res["error"]
    return res["error"]


def test_native_failures_are_reported_as_json(host_runner: Path, native_ptes: dict[str, Path], tmp_path: Path,
                                              image_files) -> None:
    corrupt = tmp_path / "corrupt.pte"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "corrupt.pte is not a loadable ExecuTorch program" in _failure(host_runner, corrupt)

    truncated = tmp_path / "cut.pte"
    truncated.write_bytes(native_ptes["fp32"].read_bytes()[:200_000])
    assert "cut.pte is not a loadable ExecuTorch program" in _failure(host_runner, truncated)
    # beside its manifest, a truncated copy is caught by its checksum before the runtime sees it
    shutil.copyfile(f"{native_ptes['fp32']}.json", f"{truncated}.json")
    assert "does not match its manifest" in _failure(host_runner, truncated)

    assert "does not exist" in _failure(host_runner, tmp_path / "missing.pte")
    short = tmp_path / "short.f32"
    short.write_bytes(image_files["fp32"][0].read_bytes()[:-4])
    assert "--input-file short.f32 has" in _failure(host_runner, native_ptes["fp32"], "--input-file", short)
    assert "--runs must be at least 1" in _failure(host_runner, native_ptes["fp32"], "--runs", "0")
    rc, res = run_native(host_runner, native_ptes["fp32"], "--no-such-flag")
    assert rc == 2 and res["ok"] is False and "unknown option --no-such-flag" in res["error"]


def test_native_rejects_a_program_with_two_inputs(host_runner: Path, tmp_path: Path) -> None:
    import torch
    from executorch.exir import to_edge_transform_and_lower

    class Two(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + y

    ex = (torch.zeros(1, 3), torch.zeros(1, 3))
    pte = tmp_path / "two.pte"
    pte.write_bytes(to_edge_transform_and_lower(torch.export.export(Two(), ex)).to_executorch().buffer)
    assert "takes 2 inputs" in _failure(host_runner, pte)


def test_aarch64_build_is_self_contained(aarch64_runner: Path) -> None:
    """What goes to a board: the binary and the wheel's libraries beside it, found through $ORIGIN
    (no path into the wheel or the build host)."""
    proc = subprocess.run(["aarch64-linux-gnu-readelf", "-d", str(aarch64_runner)], capture_output=True,
                          text=True, check=True)
    runpath = [ln.split("[")[1].rstrip("]") for ln in proc.stdout.splitlines() if "(RUNPATH)" in ln]
    assert len(runpath) == 1 and all(p.startswith("$ORIGIN") for p in runpath[0].split(":")), runpath
    needed = [ln.split("[")[1].rstrip("]") for ln in proc.stdout.splitlines() if "(NEEDED)" in ln]
    ours = [n for n in needed if n.startswith("libexecutorch")]
    assert "libexecutorch.so" in ours and "libexecutorch_backend_xnnpack.so" in ours
    assert all((aarch64_runner.parent / n).is_file() for n in ours)
    with open(aarch64_runner, "rb") as fh:
        head = fh.read(20)
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


def _host_and_arm(aarch64_runner: Path, host_runner: Path, pte: Path, image: Path, out: Path,
                  cpu: str) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    tag = f"{pte.stem}-{cpu.replace(',', '_')}"
    host_out, arm_out = out / f"x86-{tag}.f32", out / f"aarch64-{tag}.f32"
    common = ("--runs", "1", "--warmup", "0", "--input-file", image)
    rc, host = run_native(host_runner, pte, *common, "--output-file", host_out)
    assert rc == 0 and host["ok"], host
    rc, arm = run_native(aarch64_runner, pte, *common, "--output-file", arm_out, qemu_cpu=cpu)
    assert rc == 0 and arm["ok"], arm
    return host, arm, np.fromfile(host_out, dtype="<f4"), np.fromfile(arm_out, dtype="<f4")


# Two real cores, two XNNPACK kernel families: Cortex-A53 (Raspberry Pi 3, NEON only) and Cortex-A76
# (Raspberry Pi 5, NEON + dot product).
@pytest.mark.parametrize("cpu", ["cortex-a53", "cortex-a76"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_aarch64_runner_under_qemu_matches_x86(aarch64_runner: Path, host_runner: Path,
                                               native_ptes: dict[str, Path], image_files, session_out: Path,
                                               precision: str, cpu: str) -> None:
    """The aarch64 binary (XNNPACK's ARM kernels, under qemu-user) on the same real image gives the
    x86 output to float tolerance; the result says it was emulated."""
    host, arm, h, a = _host_and_arm(aarch64_runner, host_runner, native_ptes[precision], image_files[precision][0],
                                    session_out / "native", cpu)
    assert arm["device"]["emulated"] is True and arm["device"]["arch"] == "aarch64"
    assert arm["output"] == host["output"] and arm["runtime_version"] == host["runtime_version"]
    scale = float(np.abs(h).max())
    assert np.ptp(h) > 1e-6  # not a constant output
    # other SIMD kernels (NEON vs AVX): float summation order differs; int8 may differ by an LSB
    tol = 1e-3 if precision == "fp32" else 2e-2
    np.testing.assert_allclose(a, h, rtol=0, atol=tol * scale)
    assert int(np.argmax(a)) == int(np.argmax(h))
