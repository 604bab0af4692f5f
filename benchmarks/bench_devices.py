"""Benchmark (not a test): `edge bench` on the same artifacts locally and over loopback SSH, in one run.

Both "devices" are this machine: the figures show what the SSH transport adds (nothing to the
timed runs, which happen on the device; push/pull and process start-up are outside them) and give
the table the closing note quotes. The local and SSH runs happen one after the other, never at the
same time, so they do not compete for the cores.

    .venv/bin/python benchmarks/bench_devices.py [ARTIFACT ...] [--runs 50 --threads 2 --input-size 224]

Without artifacts it exports fbnetv3_b fp32 as .pte and .tflite (hub-cache or seeded random weights)
into a temporary folder. The SSH side is a real OpenSSH server started on 127.0.0.1 for the run
(sshd from openssh-server), with a throw-away host key and client key; the remote Python is this one.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edge.bench import load_results
from edge.bench.results import format_table
from edge.cli import main as edge_main


@contextlib.contextmanager
def loopback_sshd(folder: Path) -> Iterator[dict[str, str]]:
    """A real sshd on a free 127.0.0.1 port, with a fresh host key (written to known_hosts) and
    a client key; stopped on exit."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    shutil.copyfile(folder / "client_key.pub", folder / "authorized_keys")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", "/dev/null", "-o", f"Port={port}", "-o", "ListenAddress=127.0.0.1",
                             "-o", f"HostKey={folder / 'host_key'}", "-o",
                             f"AuthorizedKeysFile={folder / 'authorized_keys'}", "-o", "UsePAM=no", "-o",
                             "StrictModes=no", "-o", "PidFile=none", "-o", "Subsystem=sftp internal-sftp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        kind, key = (folder / "host_key.pub").read_text().split()[:2]
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
        yield {"url": f"ssh://{getpass.getuser()}@127.0.0.1:{port}", "identity": str(folder / "client_key"),
               "known_hosts": str(folder / "known_hosts")}
    finally:
        proc.terminate()
        proc.wait(10)


def export_defaults(out: Path, input_size: int | None) -> list[Path]:
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs
    from exporters import get_exporter

    inputs = load_inputs(ModelSpec(weights="auto", input_size=input_size), None, 1)
    print(f"exported {inputs.model.spec.name} weights={inputs.model.weights_source} "
          f"input={list(inputs.model.input_shape)}", file=sys.stderr)
    return [get_exporter(t).export(inputs.model, "fp32", out, None, None).artifact for t in ("executorch", "tflite")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--input-size", type=int, default=None, help="for the default exports (default: timm's, 224)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-devices.") as tmp:
        work = Path(tmp)
        artifacts = a.artifacts or export_defaults(work / "artifacts", a.input_size)
        common = [*map(str, artifacts), "--runs", str(a.runs), "--warmup", str(a.warmup), "--threads", str(a.threads)]
        (work / "sshd").mkdir()
        with loopback_sshd(work / "sshd") as ssh:
            rc_local = edge_main(["bench", *common, "--device", "local", "--out", str(work / "local.json")])
            rc_ssh = edge_main(["bench", *common, "--device", ssh["url"], "--identity", ssh["identity"],
                                "--known-hosts", ssh["known_hosts"], "--python", sys.executable,
                                "--out", str(work / "ssh.json")])
        local, remote = load_results(work / "local.json"), load_results(work / "ssh.json")
    print(f"\nedge bench, {a.runs} timed runs after {a.warmup} warm-up, {a.threads} threads, same machine twice:")
    print(format_table(local + remote))
    print("\nSSH vs local (same artifact, same machine): p50 ratio")
    for lo, re_ in zip(local, remote, strict=True):
        p_lo, p_re = lo["latency_ms"]["p50"], re_["latency_ms"]["p50"]
        if p_lo and p_re:
            print(f"  {lo['artifact']}: local {p_lo:.2f} ms, ssh {p_re:.2f} ms, ratio {p_re / p_lo:.2f}")
    return max(rc_local, rc_ssh)


if __name__ == "__main__":
    sys.exit(main())
