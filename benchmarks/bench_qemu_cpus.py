"""Benchmark (not a test): the aarch64 native runner under qemu-user with several emulated CPUs,
each output compared with the x86 host runner's on the same real image. It prints what qemu's CPU
models do to XNNPACK's kernel choice, not what edge does: qemu 7.2's default `-cpu max` exposes
SME, XNNPACK then picks its SME int8 GEMM, and the int8 logits differ from x86 (see
docs/native_runner.md); with SME off and on real core models they agree.

    .venv/bin/python benchmarks/bench_qemu_cpus.py [--pte out/demo/*.pte] [--cpus max,max,sme=off,cortex-a76]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SYSROOT = "/usr/aarch64-linux-gnu"


def build(target: str) -> Path:
    proc = subprocess.run(["bash", str(ROOT / "scripts/build_runner.sh"), target], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"build_runner.sh {target} failed:\n{proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def export_int8(dest: Path, input_size: int) -> tuple[Path, np.ndarray]:
    """An int8 .pte of the trained CIFAR-10 reference and one real preprocessed test image."""
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs
    from edge.reference import cifar, reference_weights
    from exporters import get_exporter
    from quantize import PTQConfig

    spec = ModelSpec(weights=str(reference_weights()), input_size=input_size)
    inputs = load_inputs(spec, cifar("train"), 128, eval_data=cifar("test"), eval_size=1)
    pte = get_exporter("executorch").export(inputs.model, "int8", dest, inputs.calib, PTQConfig(calib_size=128))
    assert inputs.eval_images is not None
    return pte.artifact, np.ascontiguousarray(inputs.eval_images[:1], dtype="<f4")


def outputs(cmd: list[str], pte: Path, image: Path, out: Path) -> np.ndarray:
    proc = subprocess.run([*cmd, str(pte), "--runs", "1", "--warmup", "0", "--input-file", str(image),
                           "--output-file", str(out)], capture_output=True, text=True, errors="replace",
                          env={**os.environ, "EDGE_EMULATED": "1"})
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return np.fromfile(out, dtype="<f4")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", default="max;max,sme=off;cortex-a53;cortex-a76",
                    help="qemu -cpu values, separated by ';' (default: %(default)s)")
    ap.add_argument("--input-size", type=int, default=32)
    a = ap.parse_args()
    host, arm = build("host"), build("aarch64")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pte, x = export_int8(work, a.input_size)
        image = work / "image.f32"
        x.tofile(image)
        ref = outputs([str(host)], pte, image, work / "host.f32")
        print(f"{pte.name}: x86 host logits argmax {int(ref.argmax())}, max |logit| {np.abs(ref).max():.3f}")
        print(f"{'qemu -cpu':<20} {'max |diff|':>10} {'argmax':>7}")
        for cpu in a.cpus.split(";"):
            got = outputs(["qemu-aarch64", "-cpu", cpu, "-L", SYSROOT, str(arm)], pte, image, work / "arm.f32")
            same = "same" if int(got.argmax()) == int(ref.argmax()) else "DIFF"
            print(f"{cpu:<20} {float(np.abs(got - ref).max()):10.4f} {same:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
