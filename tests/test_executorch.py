"""ExecuTorch target, end to end on the real runtime: fp32 parity in all three modes, the manifest,
int8 structure and fidelity on the trained reference, faults the checks must catch, and the CLI's
handling of bad input (in-process; tests/test_cli.py runs the real entry point)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from checks import REFERENCE_PTQ, check_fp32_parity, check_int8_floor
from conftest import CIFAR, IMAGENET, assert_one_line_error, edge_main

pytestmark = pytest.mark.xdist_group("reference")  # the store's reference artifacts, shared with the report

# fp32 parity per model mode: the trained reference as a classifier; the other modes on timm's
# small test net (mode support does not depend on the network, and it exports in seconds)
MODES = {"classifier": "reference_inputs", "embeddings": "tiny_embeddings", "features": "tiny_features"}


@pytest.fixture(scope="session")
def fp32_reports(artifacts) -> dict[str, dict]:
    """One fp32 .pte per model mode."""
    return {mode: artifacts.get(inputs, "executorch", "fp32") for mode, inputs in MODES.items()}


@pytest.fixture(scope="session")
def reference_int8(artifacts) -> dict:
    """int8 .pte of the CIFAR-10 reference model, calibrated on train images, judged on 500 test images."""
    return artifacts.get("reference_inputs", "executorch", "int8", REFERENCE_PTQ)


@pytest.mark.parametrize("mode", MODES)
def test_fp32_pte_equals_eager(fp32_reports, mode: str) -> None:
    # Real images: a random-weight net is chaotic, so off-distribution noise inputs would amplify
    # float rounding differences (1e-7) into large ones and say nothing about the export.
    rep = fp32_reports[mode]
    check_fp32_parity(Path(rep["artifact"]), rep["inputs"])
    assert len(rep["inputs"].model.output_names) == (5 if mode == "features" else 1)


def test_fp32_parity_block_on_real_images(fp32_reports) -> None:
    par = fp32_reports["classifier"]["parity"]
    assert par["images"] == 500 and par["measured"] is True
    assert par["vs_float"]["sqnr_db"] > 60 and par["vs_float"]["agreement_top1"] == 1.0
    assert par["vs_quantized_program"] is None  # fp32: the program is the float model itself


def test_manifest_describes_the_artifact(fp32_reports) -> None:
    from edge.io import sha256_path

    rep = fp32_reports["features"]
    man = json.loads(Path(rep["manifest"]).read_text())
    art = Path(rep["artifact"])
    assert man["artifact_sha256"] == sha256_path(art) and man["size_bytes"] == art.stat().st_size
    assert man["precision"] == "fp32" and man["target"] == "executorch" and man["quantization"] is None
    pre = man["preprocessing"]
    import timm  # timm's resolve_model_data_config decides preprocessing, asked here independently

    cfg = timm.data.resolve_model_data_config(timm.create_model("test_efficientnet", pretrained=False))
    assert pre["input_size"] == [3, 32, 32] and pre["interpolation"] == cfg["interpolation"]
    assert pre["mean"] == list(cfg["mean"]) and pre["std"] == list(cfg["std"]) and pre["crop_pct"] == cfg["crop_pct"]
    assert man["io"]["inputs"][0] == {"name": "image", "shape": [1, 3, 32, 32], "layout": "NCHW", "dtype": "float32"}
    assert [o["shape"][-1] for o in man["io"]["outputs"]] == [16, 8, 4, 2, 1]  # strides 2 ... 32
    assert man["model"]["weights_source"] == "random:seed=0" and len(man["model"]["weights_sha256"]) == 64
    assert man["versions"]["executorch"] == __import__("importlib.metadata").metadata.version("executorch")
    d = man["delegation"]
    assert d["delegated_ops"] > 20 and d["delegated_subgraphs"] == 1, d
    assert d["non_delegated_by_op"].keys() <= {"getitem"}, d
    # lowering takes a second at least, never milliseconds: a clock started late would show it
    assert 0.3 < man["export_seconds"] < 900
    assert not [p for p in art.parent.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_int8_pte_is_quantized_and_delegated(reference_int8: dict) -> None:
    man = json.loads(Path(reference_int8["manifest"]).read_text())
    q = man["quantization"]
    assert q["calib_size"] == 256 and q["observer"] == "percentile" and q["float_head"] is True
    assert man["method"] == "ptq"
    params = sum(p.numel() for p in reference_int8["inputs"].model.module.parameters())
    # int8 body, float head (conv_head holds 2.7M of the reference's 6.6M parameters): well under fp32's 4 B/param
    assert man["size_bytes"] < 0.7 * 4 * params, (man["size_bytes"], params)
    assert man["delegation"]["non_delegated_by_op"].keys() <= {"getitem"}
    par = reference_int8["parity"]
    assert par["images"] == 500 and par["measured"] is True and par["vs_quantized_program"] is not None


def test_int8_conversion_adds_little_to_the_quantization_loss(reference_int8: dict) -> None:
    """Stage attribution: the .pte on XNNPACK (int8 hard-swish included) is judged against float
    beside the fake-quant PyTorch program it came from; lowering may cost at most 1 dB and 3 pt."""
    par = reference_int8["parity"]
    art, prog = par["vs_float"], par["quantized_program_vs_float"]
    assert art["sqnr_db"] >= prog["sqnr_db"] - 1.0, (art, prog)
    assert art["agreement_top1"] >= prog["agreement_top1"] - 0.03, (art, prog)


def test_int8_keeps_the_usable_floor(reference_int8: dict) -> None:
    check_int8_floor(reference_int8["parity"]["vs_float"])


@pytest.mark.xfail(strict=True, reason=(
    "not reached yet (issue 13): PTQ int8 of the shared reference measured 13.1 dB logit SQNR and 92.6 % "
    "top-1 agreement vs float on 500 test images (the .pte vs its own fake-quant program: 27.5 dB, 94.8 %). "
    "strict: this fails loudly once int8 meets the bar, so the mark cannot go stale."))
def test_int8_meets_usable_fidelity_thresholds(reference_int8: dict) -> None:
    """What a deployable int8 model needs on real held-out images (issue 13): >= 25 dB logit SQNR,
    >= 95 % top-1 agreement with float, top-1 within 0.5 pt; the .pte within 30 dB of its program."""
    par = reference_int8["parity"]
    f, q = par["vs_float"], par["vs_quantized_program"]
    assert f["sqnr_db"] >= 25.0 and f["agreement_top1"] >= 0.95 and f["top1"] >= f["ref_top1"] - 0.005, f
    assert q["sqnr_db"] >= 30.0, q


@pytest.fixture(scope="session")
def reference_dynamic(artifacts) -> dict:
    """int8 .pte with dynamic activations (--activations dynamic): int8 weights, each conv/linear
    input quantized per row at run time by XNNPACK's qd8 kernels, the rest float."""
    return artifacts.get("reference_inputs", "executorch", "int8",
                         dataclasses.replace(REFERENCE_PTQ, activations="dynamic"))


def test_dynamic_int8_meets_the_usable_bars(reference_dynamic: dict) -> None:
    """The bars of test_int8_meets_usable_fidelity_thresholds, met by the dynamic recipe on the
    real runtime: the static ranges, not int8 itself, are what the reference cannot take
    (benchmarks/bench_int8_ceiling.py: per-image ranges keep 28 dB where static ones give 13)."""
    par = reference_dynamic["parity"]
    f, q = par["vs_float"], par["vs_quantized_program"]
    assert par["images"] == 500 and par["measured"] is True
    assert f["sqnr_db"] >= 25.0 and f["agreement_top1"] >= 0.95 and f["top1"] >= f["ref_top1"] - 0.005, f
    # the program is simulated as XNNPACK quantizes (a range per row): the .pte reproduces it
    assert q["sqnr_db"] >= 30.0, q


def test_dynamic_int8_is_delegated_with_depthwise_float(reference_dynamic: dict) -> None:
    """One XNNPACK partition, nothing left out but the output read; int8 weights for the body's
    pointwise convs, float depthwise weights (XNNPACK has no dynamically quantized depthwise conv)
    and a float head (float_head, as for static int8)."""
    import torch

    from quantize.ptq import head_modules

    man = json.loads(Path(reference_dynamic["manifest"]).read_text())
    assert man["quantization"]["activations"] == "dynamic" and man["method"] == "ptq"
    d = man["delegation"]
    assert d["delegated_subgraphs"] == 1 and d["non_delegated_by_op"].keys() <= {"getitem"}, d
    module = reference_dynamic["inputs"].model.module
    dw = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1)
    head = sum(p.numel() for h in head_modules(module) for p in getattr(module, h).parameters())
    rest = sum(p.numel() for p in module.parameters()) - dw - head
    assert 4 * (dw + head) + 0.9 * rest < man["size_bytes"] < 4 * (dw + head) + 1.3 * rest, \
        (man["size_bytes"], dw, head, rest)


def test_reference_model_reaches_its_recorded_accuracy(reference_inputs) -> None:
    """The float reference on held-out cifar10/test images with the model's own preprocessing is as
    accurate as its README says (32.2 % on all 5,000; 10 % is chance): preprocessing and weights load right."""
    from edge.metrics import topk_accuracy

    assert topk_accuracy(reference_inputs.float_outputs[0], reference_inputs.eval_labels, 1) >= 0.25


# --- faults the checks above must catch -----------------------------------------------------------------

def test_fault_wrong_mean_std_is_caught(reference_inputs) -> None:
    """Preprocessing with another mean/std (a manifest or app that got them wrong) takes the
    reference model below the accuracy bar of test_reference_model_reaches_its_recorded_accuracy."""
    from edge.data import load_batch, open_image_set
    from edge.harness import run_torch
    from edge.metrics import topk_accuracy

    model = reference_inputs.model
    tf = model.transform()  # a fresh transform: the model's own stays as it is
    norm = next(t for t in tf.transforms if type(t).__name__ == "Normalize")
    norm.mean, norm.std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]  # a common wrong guess
    items, _ = open_image_set(f"{CIFAR}::cifar10/test").split(500, model.spec.seed + 1)
    batch = load_batch(items.items, tf)
    top1 = topk_accuracy(run_torch(model.module, batch.images.numpy())[0], batch.labels, 1)
    assert top1 < 0.25, top1


def test_fault_int8_scale_off_by_two_is_caught(reference_inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Activation scales half of what calibration found (observers reporting half the range): the
    fake-quant program falls below the int8 floor that test_int8_keeps_the_usable_floor holds."""
    import torch
    from torchao.quantization.pt2e.observer import UniformQuantizationObserverBase

    from edge.harness import run_torch
    from edge.metrics import compare
    from quantize.ptq import quantize_ptq

    real = UniformQuantizationObserverBase._calculate_qparams

    def halved(self, min_val: torch.Tensor, max_val: torch.Tensor):
        if self.qscheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):  # activations, not weights
            return real(self, min_val / 2, max_val / 2)
        return real(self, min_val, max_val)

    monkeypatch.setattr(UniformQuantizationObserverBase, "_calculate_qparams", halved)
    inp = reference_inputs
    cfg = dataclasses.replace(REFERENCE_PTQ, observer="percentile")  # as the exporter resolves it
    prog = quantize_ptq(inp.model.module, inp.model.example_input(), inp.calib, cfg, "xnnpack")
    vs_float = compare(inp.float_outputs, run_torch(prog, inp.eval_images), inp.eval_labels, True)
    with pytest.raises(AssertionError):
        check_int8_floor(vs_float)


# --- the CLI on bad input: one line, exit 2, nothing written -----------------------------------------------

BASE = ["export", "executorch", "--model", "test_efficientnet", "--weights", "random", "--input-size", "32"]


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
    assert_one_line_error(edge_main(*args, *extra), pattern)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_corrupt_weights_and_empty_calib(tmp_path: Path) -> None:
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"junk" * 10)
    res = edge_main(*[a for a in BASE if a not in ("--weights", "random")], "--weights", bad, "--out", tmp_path / "o")
    assert_one_line_error(res, "not a valid safetensors")
    (tmp_path / "empty").mkdir()
    res = edge_main(*BASE, "--precision", "int8", "--calib", tmp_path / "empty", "--out", tmp_path / "o")
    assert_one_line_error(res, "no images found")
    assert not any((tmp_path / "o").glob("*.pte"))


def test_cli_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(edge_main(*BASE, "--out", blocker / "sub"), "cannot create output folder")


def test_cli_too_few_calibration_images(tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted(IMAGENET.glob("*.JPEG"))[:3]:
        (calib / p.name).write_bytes(p.read_bytes())
    res = edge_main(*BASE, "--precision", "int8", "--calib", calib, "--calib-size", "8", "--out", tmp_path / "o")
    assert_one_line_error(res, "only 3 readable image(s)")
    assert not any((tmp_path / "o").glob("*.pte"))


def test_cli_fp32_export_skips_a_corrupt_jpeg(tmp_path: Path) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted(IMAGENET.glob("*.JPEG"))[:6]:
        (calib / p.name).write_bytes(p.read_bytes())
    (calib / "n01440764_corrupt.JPEG").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    res = edge_main(*BASE, "--calib", calib, "--calib-size", "3", "--eval-size", "4", "--out", tmp_path / "o", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(res.stdout)
    assert rep["skipped_images"] == 1 and rep["parity"]["images"] == 3  # 7 files, 3 calibrate, 1 unreadable
    assert rep["parity"]["vs_float"]["sqnr_db"] > 60
    assert Path(rep["artifact"]).is_file() and Path(rep["manifest"]).is_file()


def test_etdump_profile_names_the_xnnpack_kernels(fp32_reports) -> None:
    from edge.profile import profile_pte

    rep = fp32_reports["classifier"]
    prof = profile_pte(Path(rep["artifact"]), rep["inputs"].eval_images, runs=3, threads=2)
    assert prof["Fully Connected (NC, F32) GEMM"]["count"] == 95
    assert prof["Convolution (NHWC, F32) DWConv"]["count"] == 29
    assert all(v["ms"] >= 0 for v in prof.values()) and sum(v["ms"] for v in prof.values()) > 0
