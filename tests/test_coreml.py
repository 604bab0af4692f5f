"""Core ML target. Conversion and the saved spec are checked on any OS; accuracy off macOS is the
simulated figure of the converted PyTorch program, and the tests check it is labelled so."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import pytest
from checks import REFERENCE_PTQ, check_int8_floor
from conftest import IMAGENET, assert_one_line_error, edge_main

from edge._deps import has

if not has("coremltools"):  # part of the pinned stack; skipped only where a user left it out
    pytest.skip("coremltools is not installed", allow_module_level=True)

ON_MAC = platform.system() == "Darwin"
pytestmark = pytest.mark.xdist_group("reference")  # the store's reference artifacts, shared with the report

IMAGE_INPUT = {"input_type": "image"}


@pytest.fixture(scope="session")
def float_packages(artifacts) -> dict[str, dict]:
    """fp16 and w8 classifiers of the reference (32 px), plus fp32 embeddings and fp16 feature maps
    with image input of timm's small test net."""
    return {"fp16": artifacts.get("reference_inputs", "coreml", "fp16"),
            "w8": artifacts.get("reference_inputs", "coreml", "w8"),
            "embeddings": artifacts.get("tiny_embeddings", "coreml", "fp32", options=IMAGE_INPUT),
            "features": artifacts.get("tiny_features", "coreml", "fp16", options=IMAGE_INPUT)}


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
    assert spec["inputs"] == [{"name": "image", "type": "multiArrayType", "shape": [1, 3, 32, 32], "dtype": "float32"}]
    assert [o["name"] for o in spec["outputs"]] == ["classLabel", "classLabel_probs"]
    assert spec["labels"] == [str(i) for i in range(10)]  # the reference checkpoint carries no class names
    meta = spec["metadata"]
    assert meta["edge.model"] == "fbnetv3_b.ra2_in1k" and meta["edge.precision"] == "fp16"
    assert json.loads(meta["edge.preprocessing"])["mean"] == man["preprocessing"]["mean"]
    assert meta["license"] and meta["author"].startswith("edge ")
    assert man["options"] == {"deployment_target": "iOS17", "input_type": "tensor"}
    assert man["compute_precision"] == "float16"


def test_embeddings_and_features_with_image_input(float_packages) -> None:
    import torch

    emb, feat = _manifest(float_packages["embeddings"]), _manifest(float_packages["features"])
    module = float_packages["embeddings"]["inputs"].model.module
    weighted = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in module.modules())
    assert emb["spec"]["inputs"][0]["dtype"] == "image:RGB" and emb["io"]["inputs"][0]["dtype"] == "image:RGB"
    assert [o["name"] for o in emb["spec"]["outputs"]] == ["embeddings"]
    assert emb["spec"]["weights"] == {"const:float32": weighted} and emb["spec"]["labels"] is None
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
def reference_coreml(artifacts) -> dict[str, dict]:
    """w8 and W8A8 packages of the CIFAR-10 reference model, judged on 500 test images."""
    return {"w8": artifacts.get("reference_inputs", "coreml", "w8"),
            "int8": artifacts.get("reference_inputs", "coreml", "int8", REFERENCE_PTQ)}


def test_w8a8_package_has_quantize_ops_and_int8_weights(reference_coreml) -> None:
    man = _manifest(reference_coreml["int8"])
    ops = man["spec"]["op_counts"]
    assert ops["quantize"] > 50 and ops["dequantize"] > 50
    weights = man["spec"]["weights"]
    int8 = sum(v for k, v in weights.items() if k.endswith(":int8"))
    assert int8 >= 120, weights  # all but the float head (conv_head, classifier)
    assert man["quantization"]["observer"] == "percentile" and man["options"]["deployment_target"] == "iOS17"
    assert man["spec"]["labels"] == [str(i) for i in range(10)]  # the checkpoint carries no class names


def test_w8_simulated_fidelity_is_usable(reference_coreml) -> None:
    """Weight-only int8 (fp16 compute on a device) on the reference: int8-rounded weights alone
    must leave a usable model — logits near float, the same top-1 within half a point."""
    w8 = reference_coreml["w8"]["parity"]["vs_float"]
    assert w8["sqnr_db"] >= 25.0 and w8["agreement_top1"] >= 0.95, w8
    assert abs(w8["top1"] - w8["ref_top1"]) <= 0.005, w8


def test_w8a8_simulated_fidelity_keeps_the_usable_floor(reference_coreml) -> None:
    check_int8_floor(reference_coreml["int8"]["parity"]["vs_float"])


@pytest.mark.xfail(strict=True, reason=(
    "not reached yet (issue 13): W8A8 through ExecuTorch's CoreMLQuantizer with percentile observers stays "
    "below 25 dB / 95 % agreement vs float on the shared reference (simulated). strict: fails loudly once met."))
def test_w8a8_meets_usable_fidelity_thresholds(reference_coreml) -> None:
    f = reference_coreml["int8"]["parity"]["vs_float"]
    assert f["sqnr_db"] >= 25.0 and f["agreement_top1"] >= 0.95 and f["top1"] >= f["ref_top1"] - 0.005, f


def test_int8_for_a_deployment_target_without_activation_quantization(tmp_path: Path) -> None:
    res = edge_main("export", "coreml", "--model", "test_efficientnet", "--weights", "random", "--input-size", "32",
                    "--precision", "int8",
                    "--deployment-target", "iOS16", "--calib", IMAGENET, "--out", tmp_path / "o")
    assert_one_line_error(res, "needs --deployment-target iOS17")
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
def test_predictions_on_macos_match_the_simulation(float_packages, reference_inputs) -> None:
    from edge.harness import run_session
    from edge.metrics import compare
    from edge.runtimes import runtime_for

    rep = float_packages["w8"]
    for units in ("CPU_ONLY", "ALL"):
        sess = runtime_for(rep["artifact"], compute_units=units).load(Path(rep["artifact"]))
        got = run_session(sess, reference_inputs.eval_images)
        ref = reference_inputs.float_outputs
        assert compare(ref, got)["sqnr_db"] > 20.0
