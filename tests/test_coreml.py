"""Core ML target. Conversion and the saved spec are checked on any OS; accuracy off macOS is the
simulated figure of the converted PyTorch program, and the tests check it is labelled so."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import pytest
from conftest import CIFAR, IMAGENET

from edge._deps import has
from edge.models import ModelSpec
from edge.pipeline import export_and_verify, load_inputs

if not has("coremltools"):  # part of the pinned stack; skipped only where a user left it out
    pytest.skip("coremltools is not installed", allow_module_level=True)

ON_MAC = platform.system() == "Darwin"


@pytest.fixture(scope="session")
def coreml_out(session_out: Path) -> Path:
    return session_out / "coreml"


@pytest.fixture(scope="session")
def float_packages(random_inputs, coreml_out: Path) -> dict[str, dict]:
    """fp16 and w8 classifiers (64 px), plus fp32 embeddings and fp16 feature maps."""
    out = {p: export_and_verify("coreml", random_inputs, p, coreml_out) for p in ("fp16", "w8")}
    for mode, precision in (("embeddings", "fp32"), ("features", "fp16")):
        inp = load_inputs(ModelSpec(weights="random", input_size=64, mode=mode), str(IMAGENET), 8, eval_size=4)
        out[mode] = export_and_verify("coreml", inp, precision, coreml_out, options={"input_type": "image"})
    return out


def _manifest(rep: dict) -> dict:
    return json.loads(Path(rep["manifest"]).read_text())


def test_fp16_package_holds_fp16_weights_and_tensors(float_packages) -> None:
    spec = _manifest(float_packages["fp16"])["spec"]
    assert spec["weights"] == {"const:float16": 125}  # 124 conv + 1 linear, all stored in fp16
    dt = spec["activation_dtypes"]
    assert dt["float16"] > 400 and dt.get("float32", 0) <= 2  # the fp32 input and its cast
    assert "quantize" not in spec["op_counts"] and not any(k.startswith("constexpr") for k in spec["op_counts"])


def test_w8_package_stores_every_weight_in_int8(float_packages) -> None:
    w8, fp16 = _manifest(float_packages["w8"]), _manifest(float_packages["fp16"])
    weights = w8["spec"]["weights"]
    assert len(weights) == 1 and next(iter(weights)).startswith("constexpr_") and next(iter(weights)).endswith(":int8")
    assert sum(weights.values()) == 125
    assert w8["size_bytes"] < 0.6 * fp16["size_bytes"]


def test_classifier_package_describes_io_labels_and_metadata(float_packages) -> None:
    man = _manifest(float_packages["fp16"])
    spec = man["spec"]
    assert spec["inputs"] == [{"name": "image", "type": "multiArrayType", "shape": [1, 3, 64, 64], "dtype": "float32"}]
    assert [o["name"] for o in spec["outputs"]] == ["classLabel", "classLabel_probs"]
    assert spec["labels"] is not None and len(spec["labels"]) == 1000
    meta = spec["metadata"]
    assert meta["edge.model"] == "fbnetv3_b.ra2_in1k" and meta["edge.precision"] == "fp16"
    assert json.loads(meta["edge.preprocessing"])["mean"] == man["preprocessing"]["mean"]
    assert meta["license"] and meta["author"].startswith("edge ")
    assert man["options"] == {"deployment_target": "iOS17", "input_type": "tensor"}
    assert man["compute_precision"] == "float16"


def test_embeddings_and_features_with_image_input(float_packages) -> None:
    emb, feat = _manifest(float_packages["embeddings"]), _manifest(float_packages["features"])
    assert emb["spec"]["inputs"][0]["dtype"] == "image:RGB" and emb["io"]["inputs"][0]["dtype"] == "image:RGB"
    assert [o["name"] for o in emb["spec"]["outputs"]] == ["embeddings"]
    assert emb["spec"]["weights"] == {"const:float32": 124} and emb["spec"]["labels"] is None
    names = [o["name"] for o in feat["spec"]["outputs"]]
    assert names == ["features_s2", "features_s4", "features_s8", "features_s16", "features_s32"]
    assert [o["name"] for o in feat["io"]["outputs"]] == names


def test_off_macos_figures_are_labelled_simulated(float_packages) -> None:
    par = float_packages["w8"]["parity"]
    if ON_MAC:
        assert par["measured"] is True
        return
    assert par["measured"] is False
    assert any(n.startswith("simulated — Core ML runtime unavailable") for n in par["notes"])
    assert any("float16 arithmetic is not simulated" in n for n in par["notes"])
    # w8 simulation rounds the weights, so it is not the float model: a small, real difference.
    f = par["vs_float"]
    assert math.isfinite(f["sqnr_db"]) and f["max_abs_diff"] > 0, f


@pytest.fixture(scope="session")
def reference_coreml(reference_weights: Path, coreml_out: Path) -> dict[str, dict]:
    """w8 and W8A8 packages of the CIFAR-10 reference model, judged on 500 test images."""
    spec = ModelSpec(weights=str(reference_weights), input_size=32)
    inputs = load_inputs(spec, f"{CIFAR}::cifar10/train", 256, eval_data=f"{CIFAR}::cifar10/test", eval_size=500)
    from quantize import PTQConfig

    return {
        "w8": export_and_verify("coreml", inputs, "w8", coreml_out / "ref"),
        "int8": export_and_verify("coreml", inputs, "int8", coreml_out / "ref", PTQConfig(calib_size=256)),
    }


def test_w8a8_package_has_quantize_ops_and_int8_weights(reference_coreml) -> None:
    man = _manifest(reference_coreml["int8"])
    ops = man["spec"]["op_counts"]
    assert ops["quantize"] > 50 and ops["dequantize"] > 50
    weights = man["spec"]["weights"]
    int8 = sum(v for k, v in weights.items() if k.endswith(":int8"))
    assert int8 >= 120, weights  # all but the float head (conv_head, classifier)
    assert man["quantization"]["observer"] == "percentile" and man["options"]["deployment_target"] == "iOS17"
    assert man["spec"]["labels"] == [str(i) for i in range(10)]  # the checkpoint carries no class names


def test_simulated_fidelity_on_the_reference_model(reference_coreml) -> None:
    w8 = reference_coreml["w8"]["parity"]["vs_float"]
    assert w8["sqnr_db"] >= 25.0 and abs(w8["top1"] - w8["ref_top1"]) <= 0.01, w8
    q = reference_coreml["int8"]["parity"]["vs_float"]
    assert q["top1"] >= q["ref_top1"] - 0.03, q


@pytest.mark.xfail(strict=True, reason=(
    "not reached on the weakly trained reference model (26% top-1, tiny logit margins): w8 measured "
    "34.3 dB but 98.2% top-1 agreement; W8A8 (percentile observers) 8.1 dB and 60% agreement, with "
    "top-1 equal to float. strict: fails loudly once met."))
def test_usable_fidelity_thresholds(reference_coreml) -> None:
    for precision in ("w8", "int8"):
        f = reference_coreml[precision]["parity"]["vs_float"]
        assert f["sqnr_db"] >= 15.0 and f["agreement_top1"] >= 0.99, (precision, f)


def _cli(*args: str):
    from test_executorch import _edge

    return _edge(*args)


def test_int8_for_a_deployment_target_without_activation_quantization(tmp_path: Path) -> None:
    from test_executorch import _assert_one_line_error

    res = _cli("export", "coreml", "--weights", "random", "--input-size", "64", "--precision", "int8",
               "--deployment-target", "iOS16", "--calib", str(IMAGENET), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "needs --deployment-target iOS17")
    assert not (tmp_path / "o").exists()


def test_unsupported_op_is_a_clear_error_and_writes_nothing(unconvertible_model, tmp_path: Path) -> None:
    from edge.errors import EdgeError
    from exporters import get_exporter

    model = unconvertible_model
    with pytest.raises(EdgeError, match="coremltools could not convert"):
        get_exporter("coreml").export(model, "fp32", tmp_path)
    assert not any(tmp_path.iterdir())


def test_not_a_package_is_a_clear_error(tmp_path: Path) -> None:
    from edge.coreml_spec import inspect_mlpackage
    from edge.errors import EdgeError

    bogus = tmp_path / "x.mlpackage"
    bogus.mkdir()
    with pytest.raises(EdgeError, match="not a Core ML .mlpackage"):
        inspect_mlpackage(bogus)


@pytest.mark.skipif(not ON_MAC, reason="Core ML predictions run only on macOS")
def test_predictions_on_macos_match_the_simulation(float_packages, random_inputs) -> None:
    from edge.harness import run_session
    from edge.metrics import compare
    from edge.runtimes import runtime_for

    rep = float_packages["w8"]
    for units in ("CPU_ONLY", "ALL"):
        sess = runtime_for(rep["artifact"], compute_units=units).load(Path(rep["artifact"]))
        got = run_session(sess, random_inputs.eval_images)
        ref = random_inputs.float_outputs
        assert compare(ref, got)["sqnr_db"] > 20.0
