"""ExecuTorch target, end to end on the real runtime: fp32 parity in all three modes, the manifest,
int8 fidelity on a trained model, and the CLI's handling of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGENET

from edge.harness import run_session
from edge.models import ModelSpec
from edge.pipeline import export_and_verify, load_inputs
from edge.runtimes import runtime_for

MODES = ["classifier", "embeddings", "features"]


@pytest.fixture(scope="session")
def fp32_reports(random_inputs, session_out: Path) -> dict[str, dict]:
    """One fp32 .pte per model mode (64 px, random weights with BN re-estimated)."""
    out = {"classifier": export_and_verify("executorch", random_inputs, "fp32", session_out)}
    for mode in MODES[1:]:
        inp = load_inputs(ModelSpec(weights="random", input_size=64, mode=mode), str(IMAGENET), 32,
                          eval_size=8, recalibrate_bn=True)
        out[mode] = export_and_verify("executorch", inp, "fp32", session_out)
        out[mode]["inputs"] = inp
    out["classifier"]["inputs"] = random_inputs
    return out


@pytest.mark.parametrize("mode", MODES)
def test_fp32_pte_equals_eager(fp32_reports, mode: str) -> None:
    rep = fp32_reports[mode]
    inputs = rep["inputs"]
    # Real images: a random-weight net is chaotic, so off-distribution noise inputs would amplify
    # float rounding differences (1e-7) into large ones and say nothing about the export.
    x = inputs.eval_images[:6]
    sess = runtime_for(rep["artifact"]).load(Path(rep["artifact"]), threads=2)
    got = run_session(sess, x)
    ref = runtime_for("pytorch").load(inputs.model.module).run(x)
    for g, r in zip(got, ref, strict=True):
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=0, atol=1e-4 * float(np.abs(r).max()))
    assert len(got) == (5 if mode == "features" else 1)


def test_fp32_parity_block_on_real_images(fp32_reports) -> None:
    par = fp32_reports["classifier"]["parity"]
    assert par["images"] == 16
    assert par["vs_float"]["sqnr_db"] > 60 and par["vs_float"]["agreement_top1"] == 1.0


def test_manifest_describes_the_artifact(fp32_reports) -> None:
    from edge.io import sha256_path

    rep = fp32_reports["features"]
    man = json.loads(Path(rep["manifest"]).read_text())
    art = Path(rep["artifact"])
    assert man["artifact_sha256"] == sha256_path(art) and man["size_bytes"] == art.stat().st_size
    assert man["precision"] == "fp32" and man["target"] == "executorch" and man["quantization"] is None
    assert man["preprocessing"]["input_size"] == [3, 64, 64] and man["preprocessing"]["interpolation"]
    assert man["io"]["inputs"][0] == {"name": "image", "shape": [1, 3, 64, 64], "layout": "NCHW", "dtype": "float32"}
    assert [o["shape"][-1] for o in man["io"]["outputs"]] == [32, 16, 8, 4, 2]
    assert man["model"]["weights_source"] == "random:seed=0" and len(man["model"]["weights_sha256"]) == 64
    assert man["versions"]["executorch"] and man["versions"]["torch"]
    assert man["delegation"]["delegated_ops"] > 100
    assert man["export_seconds"] > 0
    assert not [p for p in art.parent.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_int8_pte_is_quantized_and_runs(random_inputs, session_out: Path) -> None:
    """Structure on random weights (fidelity on random weights is meaningless: see test_int8_fidelity)."""
    from quantize import PTQConfig

    rep = export_and_verify("executorch", random_inputs, "int8", session_out / "int8",
                            PTQConfig(calib_size=32, observer="minmax"))
    man = json.loads(Path(rep["manifest"]).read_text())
    assert man["quantization"]["calib_size"] == 32 and man["quantization"]["observer"] == "minmax"
    fp32_size = (session_out / "fbnetv3_b_ra2_in1k-fp32.pte").stat().st_size
    # The float head (conv_head + classifier, 4.8M of 8.6M parameters) stays fp32 by default.
    assert man["size_bytes"] < 0.7 * fp32_size and man["quantization"]["float_head"] is True
    assert man["delegation"]["non_delegated_by_op"].keys() <= {"dim_order_ops__to_dim_order_copy_default", "getitem"}
    assert rep["parity"]["vs_quantized_program"] is not None


@pytest.fixture(scope="session")
def reference_int8(reference_weights: Path, session_out: Path) -> dict:
    """int8 .pte of the CIFAR-10 reference model, calibrated on train images, judged on test images."""
    from conftest import CIFAR

    from quantize import PTQConfig

    spec = ModelSpec(weights=str(reference_weights), input_size=32)
    inputs = load_inputs(spec, f"{CIFAR}::cifar10/train", 256, eval_data=f"{CIFAR}::cifar10/test", eval_size=500)
    return export_and_verify("executorch", inputs, "int8", session_out / "ref", PTQConfig(calib_size=256))


def test_int8_conversion_adds_little_to_the_quantization_loss(reference_int8: dict) -> None:
    """Stage attribution: the .pte on XNNPACK (int8 hard-swish included) is judged against float
    beside the fake-quant PyTorch program it came from; lowering may cost at most 1 dB and 3 pt."""
    par = reference_int8["parity"]
    assert par["images"] == 500 and par["measured"] is True
    art, prog = par["vs_float"], par["quantized_program_vs_float"]
    assert art["sqnr_db"] >= prog["sqnr_db"] - 1.0, (art, prog)
    assert art["agreement_top1"] >= prog["agreement_top1"] - 0.03, (art, prog)


@pytest.mark.xfail(strict=True, reason=(
    "XNNPACK's int8 kernels do not reproduce the fake-quant program to 25 dB: measured 13.6 dB "
    "(histogram) to 20.7 dB (percentile) on the reference model: requantization rounding differs by an "
    "LSB and this weakly trained net amplifies it. strict: it fails loudly once met."))
def test_int8_artifact_reproduces_its_quantized_program(reference_int8: dict) -> None:
    q = reference_int8["parity"]["vs_quantized_program"]
    assert q["sqnr_db"] >= 25.0 and q["agreement_top1"] >= 0.97, q


def test_int8_accuracy_stays_near_float(reference_int8: dict) -> None:
    f = reference_int8["parity"]["vs_float"]
    assert f["top1"] >= f["ref_top1"] - 0.03, f


@pytest.mark.xfail(strict=True, reason=(
    "not reached yet: PTQ int8 of the briefly trained reference fbnetv3_b (26% top-1) measured 10 dB logit "
    "SQNR and 82% top-1 agreement in fake-quant (percentile observer, float head); int8 weights alone give "
    "34 dB, and leaving any one stage float gains <= 0.6 dB: the activation noise is spread evenly. "
    "strict: this fails loudly once int8 meets the bar, so the mark cannot go stale."))
def test_int8_meets_usable_fidelity_thresholds(reference_int8: dict) -> None:
    """What a usable int8 model needs, on real held-out images: >= 15 dB logit SQNR and >= 99%
    top-1 agreement with float."""
    f = reference_int8["parity"]["vs_float"]
    assert f["sqnr_db"] >= 15.0 and f["agreement_top1"] >= 0.99, f


def _edge(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {"EDGE_QUIET": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    import os

    env["HOME"] = os.environ.get("HOME", "/root")
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


def _assert_one_line_error(res: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edge: error:")]
    assert len(lines) == 1 and pattern in lines[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr


BASE = ["export", "executorch", "--weights", "random", "--input-size", "64"]


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--model", "no_such_net"], "unknown timm model"),
        (["--weights", "/nonexistent/w.safetensors"], "does not exist"),
        (["--precision", "int8"], "--calib DIR is needed"),
    ],
)
def test_cli_bad_input_fails_cleanly(tmp_path: Path, extra: list[str], pattern: str) -> None:
    args = [*BASE, "--out", str(tmp_path / "o")]
    if extra[0] == "--weights":
        args = [a for a in args if a not in ("--weights", "random")]
    res = _edge(*args, *extra)
    _assert_one_line_error(res, pattern)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_corrupt_weights_and_empty_calib(tmp_path: Path) -> None:
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"junk" * 10)
    res = _edge(*[a for a in BASE if a not in ("--weights", "random")], "--weights", str(bad),
                "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "not a valid safetensors")
    (tmp_path / "empty").mkdir()
    res = _edge(*BASE, "--precision", "int8", "--calib", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "no images found")
    assert not any((tmp_path / "o").glob("*.pte"))


def test_cli_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _edge(*BASE, "--out", str(blocker / "sub"))
    _assert_one_line_error(res, "cannot create output folder")


def test_cli_too_few_calibration_images(tmp_path: Path, imagenet: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted(imagenet.glob("*.JPEG"))[:3]:
        (calib / p.name).write_bytes(p.read_bytes())
    res = _edge(*BASE, "--precision", "int8", "--calib", str(calib), "--calib-size", "8",
                "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "only 3 readable image(s)")
    assert not any((tmp_path / "o").glob("*.pte"))


def test_cli_fp32_export_skips_a_corrupt_jpeg(tmp_path: Path, imagenet: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted(imagenet.glob("*.JPEG"))[:6]:
        (calib / p.name).write_bytes(p.read_bytes())
    (calib / "n01440764_corrupt.JPEG").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    res = _edge(*BASE, "--calib", str(calib), "--calib-size", "3", "--eval-size", "4",
                "--out", str(tmp_path / "o"), "--json")
    res_env = res.stderr
    assert res.returncode == 0, res_env[-3000:]
    rep = json.loads(res.stdout)
    assert rep["skipped_images"] == 1
    assert rep["parity"]["vs_float"]["sqnr_db"] > 60
    assert Path(rep["artifact"]).is_file() and Path(rep["manifest"]).is_file()


def test_etdump_profile_names_the_xnnpack_kernels(fp32_reports) -> None:
    from edge.profile import profile_pte

    rep = fp32_reports["classifier"]
    prof = profile_pte(Path(rep["artifact"]), rep["inputs"].eval_images, runs=3, threads=2)
    assert prof["Fully Connected (NC, F32) GEMM"]["count"] == 95
    assert prof["Convolution (NHWC, F32) DWConv"]["count"] == 29
    assert all(v["ms"] >= 0 for v in prof.values())
