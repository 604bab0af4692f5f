"""`edge bench`: the device runner on real runtimes, locally and over a real OpenSSH server on
loopback; fleet runs; the result schema; adb output parsers on upstream formats and the real adb
client's missing-device error. No Android device exists here: nothing below measures one."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import require_tool

from edge._deps import has
from edge.bench import load_results, validate_result
from edge.bench.devices import BenchConfig, device_for
from edge.bench.devices.base import RUNNER
from edge.bench.fleet import parse_devices_file
from edge.bench.formats import (
    RunContext,
    parse_android_facts,
    parse_benchmark_model,
    parse_executor_runner,
    parse_minibench,
)
from edge.cli import main
from edge.errors import EdgeError

pytestmark = pytest.mark.xdist_group("tiny")  # shares the store's tiny artifacts with test_native_runner.py

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
CFG = BenchConfig(threads=2, runs=3, warmup=1, connect_timeout=5, run_timeout=300)


# --- artifacts (64 px, shared by the whole session) -----------------------------------------------

@pytest.fixture(scope="session")
def pte(artifacts) -> Path:
    """The runner and transports do not depend on the model: timm's small test net keeps the exports quick."""
    return Path(artifacts.get("tiny_inputs", "executorch", "fp32")["artifact"])


@pytest.fixture(scope="session")
def tflite(artifacts) -> Path:
    if not has("onnx2tf") or not has("ai_edge_litert"):
        pytest.skip("the TFLite stack is not installed")
    return Path(artifacts.get("tiny_inputs", "tflite", "fp32")["artifact"])


def copy_as(artifact: Path, folder: Path, name: str) -> Path:
    """The artifact and its manifest under another file name."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    shutil.copyfile(artifact, dest)
    shutil.copyfile(artifact.with_name(artifact.name + ".json"), folder / (name + ".json"))
    return dest


def run_runner(*args: str) -> tuple[int, dict]:
    p = subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=300)
    lines = p.stdout.strip().splitlines()
    assert lines, p.stderr
    return p.returncode, json.loads(lines[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a real OpenSSH server on 127.0.0.1 -----------------------------------------------------------

@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    sshd_bin = require_tool("sshd", "openssh-server")
    require_tool("ssh", "openssh-client")
    keygen = require_tool("ssh-keygen", "openssh-client")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    shutil.copyfile(d / "client_key.pub", d / "authorized_keys")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # Debian's sshd needs its privilege-separation dir
    port = free_port()
    log = (d / "sshd.log").open("w")
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", "/dev/null", "-o", f"Port={port}",
                             "-o", "ListenAddress=127.0.0.1", "-o", f"HostKey={d / 'host_key'}",
                             "-o", f"AuthorizedKeysFile={d / 'authorized_keys'}", "-o", "UsePAM=no",
                             "-o", "StrictModes=no", "-o", "PidFile=none", "-o", "Subsystem=sftp internal-sftp"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"sshd did not start: {(d / 'sshd.log').read_text()}")
                time.sleep(0.1)
        host_key = (d / "host_key.pub").read_text().split()
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        (d / "empty_known_hosts").write_text("")
        import getpass

        yield {"url": f"ssh://{getpass.getuser()}@127.0.0.1:{port}", "port": port, "identity": str(d / "client_key"),
               "known_hosts": str(d / "known_hosts"), "empty_known_hosts": str(d / "empty_known_hosts")}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def ssh_device(sshd: dict, name: str | None = "loopback", **over: str):
    opts = {"identity": sshd["identity"], "known_hosts": sshd["known_hosts"], "python": sys.executable, **over}
    return device_for(sshd["url"], name=name, **opts)


def tmp_leftovers(name: str | None = None) -> set[str]:
    """The runner's temporary folders left in /tmp (holding a file called ``name``): the other
    xdist worker may be benchmarking at the same moment, so a test checks for its own files."""
    return {p.name for p in Path(tempfile.gettempdir()).glob("edge-bench.*")
            if name is None or (p / name).exists()}


# --- the runner itself ----------------------------------------------------------------------------

ALLOWED_IMPORTS = {"__future__", "argparse", "hashlib", "json", "os", "platform", "socket", "sys", "time",
                   "typing", "importlib", "resource", "subprocess", "numpy",
                   "executorch", "ai_edge_litert", "tflite_runtime", "tensorflow", "coremltools", "torch"}


def test_runner_is_one_self_contained_file() -> None:
    """The runner is copied alone to devices: only the standard library, numpy and runtimes."""
    tree = ast.parse(RUNNER.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
    assert "edge" not in imported and "exporters" not in imported and "quantize" not in imported
    # torch only as ExecuTorch's own dependency (its pybindings take torch tensors), in that loader.
    top_level = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    assert "torch" not in top_level and "numpy" not in top_level


def test_local_pte(pte: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where `local` makes its device folder
    res = validate_result(device_for("local", name="here").bench(pte, CFG))
    assert res["ok"] and res["error"] is None, res["error"]
    assert (res["runner"], res["runtime"], res["target"], res["precision"]) == ("python", "executorch", "executorch",
                                                                               "fp32")
    manifest = json.loads(pte.with_name(pte.name + ".json").read_text())
    assert res["artifact_sha256"] == manifest["artifact_sha256"]
    assert res["output"] == {"shapes": [[1, 1000]], "finite": True, "shape_ok": True}  # test_efficientnet: 1000 classes
    lat = res["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["max"] and lat["min"] <= lat["mean"] <= lat["max"]
    assert res["load_ms"] > 0 and res["first_run_ms"] > 0 and res["peak_rss_mb"] > 10
    assert (res["threads"], res["runs"], res["warmup"]) == (2, 3, 1)
    dev = res["device"]
    assert dev["name"] == "here" and dev["cores"] == os.cpu_count() and dev["emulated"] is False
    assert dev["arch"] and dev["os"].startswith("Linux")
    assert list(tmp_path.iterdir()) == []  # the device folder was removed


def test_local_tflite_via_cli_without_torch(tflite: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "res.json"
    rc = main(["bench", str(tflite), "--device", "local", "--runs", "3", "--warmup", "1", "--json",
               "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert load_results(out) == printed
    (res,) = printed
    assert res["ok"] and res["runtime"] == "litert" and res["output"]["shape_ok"] and res["output"]["finite"]
    # The runner's own peak RSS, not the host's (getrusage's ru_maxrss survives fork+exec).
    host_rss_mb = next(int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines()
                       if ln.startswith("VmRSS:")) / 1024
    assert 10 < res["peak_rss_mb"] < host_rss_mb, (res["peak_rss_mb"], host_rss_mb)
    # A .tflite device needs no torch: the runner never loads it for one.
    code = (f"import runpy, sys\nsys.argv = ['device_runner.py', {str(tflite)!r}, '--runs', '1']\n"
            f"try:\n    runpy.run_path({str(RUNNER)!r}, run_name='__main__')\n"
            "except SystemExit as e:\n    print('exit', e.code)\n"
            "print('torch loaded:', 'torch' in sys.modules)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "exit 0" in p.stdout and "torch loaded: False" in p.stdout, p.stdout + p.stderr


def test_runner_rejects_corrupt_and_incomplete_artifacts(tflite: Path, pte: Path, tmp_path: Path) -> None:
    # A truncated copy beside its manifest: the sha256 check names it before any runtime sees it.
    bad = copy_as(tflite, tmp_path, "bad.tflite")
    bad.write_bytes(tflite.read_bytes()[:4096])
    rc, res = run_runner(str(bad))
    assert rc != 0 and not res["ok"] and "does not match its manifest" in res["error"]
    validate_result(res)
    # Same bytes, manifest without a checksum: the runtime itself refuses the file.
    man = json.loads((tmp_path / "bad.tflite.json").read_text())
    man["artifact_sha256"] = None
    (tmp_path / "bad.tflite.json").write_text(json.dumps(man))
    rc, res = run_runner(str(bad))
    assert rc != 0 and not res["ok"] and "not a loadable .tflite model" in res["error"]
    bad_pte = copy_as(pte, tmp_path, "bad.pte")
    bad_pte.write_bytes(b"\0" * 1000)
    man = json.loads((tmp_path / "bad.pte.json").read_text())
    man["artifact_sha256"] = None
    (tmp_path / "bad.pte.json").write_text(json.dumps(man))
    rc, res = run_runner(str(bad_pte))
    assert rc != 0 and not res["ok"] and "not a loadable ExecuTorch program" in res["error"]
    # No manifest beside the artifact.
    (tmp_path / "bad.tflite.json").unlink()
    rc, res = run_runner(str(bad))
    assert rc != 0 and "no manifest" in res["error"]
    rc, res = run_runner(str(tmp_path / "missing.pte"))
    assert rc != 0 and "does not exist" in res["error"]


# --- SSH (a real sshd on loopback) ----------------------------------------------------------------

def test_ssh_runs_files_with_spaces_and_shell_characters(sshd: dict, tflite: Path, pte: Path,
                                                         tmp_path: Path) -> None:
    # Unquoted, this name would run `cd; touch edge-bench-INJECTED` (a file in $HOME).
    marker = Path.home() / "edge-bench-INJECTED"
    marker.unlink(missing_ok=True)
    folder = tmp_path / "a folder; with $(spaces)"
    pushed = []
    for art in (tflite, pte):
        weird = copy_as(art, folder, f"m a;cd;touch edge-bench-INJECTED;b $(cd;touch edge-bench-INJECTED)'{art.suffix}")
        pushed.append(weird.name)
        res = validate_result(ssh_device(sshd).bench(weird, CFG))
        assert res["ok"], res["error"]
        assert res["artifact"] == weird.name and res["device"]["name"] == "loopback"
        assert res["output"]["shape_ok"] and res["artifact_sha256"] == json.loads(
            (folder / (weird.name + ".json")).read_text())["artifact_sha256"]
    assert not marker.exists(), "a file name reached a shell unquoted"
    assert not any(tmp_leftovers(name) for name in pushed)  # what was pushed was removed


def test_ssh_unknown_host_key_is_refused(sshd: dict, tflite: Path) -> None:
    with pytest.raises(EdgeError, match="host key of 127.0.0.1:.* is not in .*never trusts"):
        ssh_device(sshd, known_hosts=sshd["empty_known_hosts"]).bench(tflite, CFG)
    with pytest.raises(EdgeError, match="known_hosts file .* does not exist"):
        ssh_device(sshd, known_hosts=str(Path(sshd["known_hosts"]).with_name("nope"))).bench(tflite, CFG)


def test_ssh_unreachable_port_fails_within_the_timeout(sshd: dict, tflite: Path) -> None:
    url = sshd["url"].rsplit(":", 1)[0] + f":{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(EdgeError, match="cannot reach 127.0.0.1:"):
        device_for(url, identity=sshd["identity"], known_hosts=sshd["known_hosts"]).bench(tflite, CFG)
    assert time.monotonic() - t0 < CFG.connect_timeout + 10


def test_ssh_device_without_a_runtime_says_so(sshd: dict, tflite: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    """A device Python with numpy but no TFLite runtime: the runner's ok:false error surfaces."""
    import numpy

    only_numpy = tmp_path / "site"
    only_numpy.mkdir()
    site = Path(numpy.__file__).parents[1]
    for name in ("numpy", "numpy.libs"):
        if (site / name).exists():
            (only_numpy / name).symlink_to(site / name)
    python = f"env PYTHONPATH={only_numpy} {sys.executable} -S"
    res = ssh_device(sshd, python=python).bench(tflite, CFG)
    assert not res["ok"] and "no TFLite runtime on this device" in res["error"]
    rc = main(["bench", str(tflite), "--device", sshd["url"], "--identity", sshd["identity"],
               "--known-hosts", sshd["known_hosts"], "--python", python, "--runs", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and "edge: error: 1 of 1 run(s) failed" in err and "no TFLite runtime" in err
    with pytest.raises(EdgeError, match="has no 'no-such-python3'"):
        ssh_device(sshd, python="no-such-python3").bench(tflite, CFG)


def test_fleet_local_and_ssh_merge_into_one_list(sshd: dict, tflite: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    devices = tmp_path / "devices.txt"
    devices.write_text("# name  url  options\n"
                       "here local\n"
                       f"board {sshd['url']} identity={sshd['identity']} known_hosts={sshd['known_hosts']}"
                       f" python={sys.executable}  # loopback\n")
    out = tmp_path / "fleet.json"
    rc = main(["bench", str(tflite), "--devices", str(devices), "--runs", "3", "--warmup", "1", "--out", str(out)])
    table = capsys.readouterr().out
    assert rc == 0
    results = load_results(out)
    assert [r["device"]["name"] for r in results] == ["here", "board"]
    assert all(r["ok"] and r["artifact"] == tflite.name for r in results)
    assert "here" in table and "board" in table and "litert/python" in table
    # A dead device in the fleet gives a failed row, not a lost fleet.
    devices.write_text(f"here local\ndead ssh://nobody@127.0.0.1:{free_port()} known_hosts={sshd['known_hosts']}\n")
    rc = main(["bench", str(tflite), "--devices", str(devices), "--runs", "2", "--out", str(out)])
    assert rc == 2
    here, dead = load_results(out)
    assert here["ok"] and not dead["ok"] and "cannot reach" in dead["error"] and dead["latency_ms"]["p50"] is None


# --- options, files and schema --------------------------------------------------------------------

def cli_error(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one-line error `edge` prints for a bad command (exit status 2)."""
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("edge: error: "), err
    return err


def test_devices_file_and_option_errors(tmp_path: Path, tflite: Path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "d.txt"
    f.write_text("lonely\n")
    with pytest.raises(EdgeError, match="d.txt:1: expected `name url"):
        parse_devices_file(f)
    f.write_text("x local colour=blue\n")
    assert "colour do not apply to local devices" in cli_error(["bench", str(tflite), "--devices", str(f)], capsys)
    j = tmp_path / "d.json"
    j.write_text(json.dumps([{"name": "a", "url": "local"}, {"name": "b", "url": "ssh://u@h:2222",
                                                               "identity": "k"}]))
    specs = parse_devices_file(j)
    assert [(s.name, s.url, s.options) for s in specs] == [("a", "local", {}), ("b", "ssh://u@h:2222",
                                                                                {"identity": "k"})]
    for args, msg in ((["--device", "local", "--identity", "key"], "--identity apply to none of the devices"),
                      (["--device", "adb://emulator-5554"], "--adb-runner benchmark_model"),
                      (["--device", "telnet://x"], "unknown device"),
                      (["--device", "local", "--device", "local"], "appear twice"),
                      (["--device", "ssh://u@h:99999"], "bad port"),
                      (["--runs", "0"], "--runs must be at least 1")):
        assert msg in cli_error(["bench", str(tflite), *args], capsys)
    assert "does not exist" in cli_error(["bench", str(tmp_path / "none.pte")], capsys)


def test_load_results_validates_the_schema(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    good = parse_benchmark_model(fixture("benchmark_model.txt"), ctx())
    p.write_text(json.dumps([good]))
    assert load_results(p) == [good]
    for broken, msg in (({"x": 1}, "expected a JSON list"), ([{**good, "schema": "v0"}], "schema is 'v0'"),
                        ([{k: v for k, v in good.items() if k != "latency_ms"}], "missing key 'latency_ms'"),
                        ([{**good, "ok": False, "error": None}], "must say why"),
                        ([{**good, "load_ms": "fast"}], "load_ms must be a number or null")):
        p.write_text(json.dumps(broken))
        with pytest.raises(EdgeError, match=msg):
            load_results(p)
    p.write_text("{not json")
    with pytest.raises(EdgeError, match="not JSON"):
        load_results(p)
    with pytest.raises(EdgeError, match="do not exist"):
        load_results(tmp_path / "none.json")


# --- adb: parsers on upstream formats, and the real adb client without a device -------------------

def fixture(name: str) -> str:
    """A fixture file without its '# ' header (which names the upstream source)."""
    return "\n".join(ln for ln in (FIXTURES / name).read_text().splitlines() if not ln.startswith("# "))


def ctx(warmup: int = 3, runs: int = 20) -> RunContext:
    device = {"name": "phone", "cpu": None, "cores": None, "os": None, "arch": None, "emulated": False}
    return RunContext(artifact="m.tflite", device=device, threads=2, warmup=warmup, runs=runs,
                      target="tflite", precision="fp32", expected_shapes=[[1, 1000]])


def test_benchmark_model_output_parsed() -> None:
    res = validate_result(parse_benchmark_model(fixture("benchmark_model.txt"), ctx()))
    assert res["ok"] and (res["runner"], res["runtime"]) == ("benchmark_model", "litert")
    assert res["load_ms"] == 41.5 and res["first_run_ms"] == 9.12
    assert res["latency_ms"] == {"p50": 6.984, "p90": None, "min": 6.811, "max": 7.42, "mean": 7.003}
    assert (res["warmup"], res["runs"], res["peak_rss_mb"]) == (3, 20, 63.2)
    assert res["output"] == {"shapes": None, "finite": None, "shape_ok": None}  # benchmark_model checks nothing

    legacy = validate_result(parse_benchmark_model(fixture("benchmark_model_legacy.txt"), ctx()))
    assert legacy["ok"] and legacy["load_ms"] == 38.467 and legacy["first_run_ms"] is None
    assert legacy["latency_ms"] == {"p50": None, "p90": None, "min": 77.385, "max": 88.213, "mean": 79.761}
    assert (legacy["runs"], legacy["peak_rss_mb"]) == (50, None)

    failed = validate_result(parse_benchmark_model(fixture("benchmark_model_error.txt"), ctx()))
    assert not failed["ok"] and "Benchmarking failed" in failed["error"] and failed["load_ms"] is None


def test_minibench_results_parsed() -> None:
    res = validate_result(parse_minibench(fixture("minibench_results.txt"), ctx()))
    assert res["ok"] and (res["runner"], res["runtime"], res["threads"]) == ("minibench", "executorch", None)
    assert res["load_ms"] == 38.4 and res["latency_ms"] == {"p50": None, "p90": None, "min": None, "max": None,
                                                            "mean": 7.21}
    assert res["first_run_ms"] is None and res["peak_rss_mb"] is None  # PSS growth is not peak RSS
    assert res["extra"] == {"trimmean_inference_latency(ms)": 7.05, "ram_pss_usage(mb)": 41.7}
    assert res["device"]["os"] == "Android 14"
    failed = validate_result(parse_minibench(fixture("minibench_load_error.txt"), ctx()))
    assert not failed["ok"] and "error code 35" in failed["error"] and failed["load_ms"] == 3.2


def test_executor_runner_output_parsed() -> None:
    res = validate_result(parse_executor_runner(fixture("executor_runner.txt"), ctx(warmup=2, runs=3)))
    assert res["ok"] and (res["runner"], res["runtime"]) == ("executor_runner", "executorch")
    assert res["load_ms"] == 37.412 and res["first_run_ms"] == 10.1 and res["runs"] == 3
    assert res["latency_ms"] == {"p50": 7.9, "p90": 7.98, "min": 7.8, "max": 8.0, "mean": 7.9}
    assert res["output"] == {"shapes": [[1, 1000]], "finite": None, "shape_ok": True}
    legacy = validate_result(parse_executor_runner(fixture("executor_runner_legacy.txt"), ctx(warmup=2, runs=3)))
    assert legacy["latency_ms"]["mean"] is None and legacy["extra"]["total_ms_all_executions"] == 41.85
    assert not legacy["ok"] and legacy["output"]["finite"] is False  # a printed nan


def test_android_facts_parsed() -> None:
    dev = parse_android_facts(fixture("android_facts.txt"), "emu")
    assert dev == {"name": "emu", "cpu": "ranchu", "cores": 4, "os": "Android 14", "arch": "aarch64",
                   "emulated": True, "model": "sdk_gphone64_arm64"}


def _stop_adb_server(adb: str, port: int) -> None:
    """``adb kill-server`` for the test's private server; on a loaded machine it can hang while
    that server is still starting, so the server (``adb -L tcp:PORT fork-server``) is then killed."""
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(port)}
    try:
        subprocess.run([adb, "kill-server"], capture_output=True, timeout=30, env=env)
    except subprocess.TimeoutExpired:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if f"tcp:{port}" in cmdline.read_bytes().decode(errors="replace").split("\0"):
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
    for _ in range(50):  # the port closes once the server has exited
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.1)


def test_adb_missing_device_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adb = require_tool("adb", "adb")
    port = free_port()
    # A private adb server on a free port: never touches a server someone else runs, killed below.
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    art = tmp_path / "m.tflite"
    art.write_bytes(b"TFL3")
    (tmp_path / "m.tflite.json").write_text("{}")
    try:
        with pytest.raises(EdgeError, match="adb device 'emulator-5554' is not available .*not found"):
            device_for("adb://emulator-5554", adb_runner="benchmark_model").bench(art, CFG)
    finally:
        _stop_adb_server(adb, port)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the test's adb server is still running"
