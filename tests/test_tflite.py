"""TFLite target through onnx2tf, run by the real LiteRT interpreter (XNNPACK delegate)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from conftest import CIFAR, IMAGENET

from edge._deps import has
from edge.harness import run_session
from edge.models import ModelSpec
from edge.pipeline import export_and_verify, load_inputs
from edge.runtimes import runtime_for

if not (has("onnx2tf") and has("ai_edge_litert")):
    pytest.skip("the TFLite stack is not installed", allow_module_level=True)


@pytest.fixture(scope="session")
def tflite_out(session_out: Path) -> Path:
    return session_out / "tflite"


@pytest.fixture(scope="session")
def tflite_reports(random_inputs, tflite_out: Path) -> dict[str, dict]:
    """fp32 and int8 (int8 I/O) classifiers at 64 px, fp16 with every socket connect refused and
    recorded, and fp32 feature maps."""
    out = {"fp32": export_and_verify("tflite", random_inputs, "fp32", tflite_out),
           "int8": export_and_verify("tflite", random_inputs, "int8", tflite_out / "int8io", options={"io": "int8"})}
    attempts: list = []
    real_connect = socket.socket.connect

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network access refused by the test")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        out["fp16"] = export_and_verify("tflite", random_inputs, "fp16", tflite_out)
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
    out["fp16"]["socket_attempts"] = attempts
    inp = load_inputs(ModelSpec(weights="random", input_size=64, mode="features"), str(IMAGENET), 8, eval_size=4,
                      recalibrate_bn=True)
    out["features"] = export_and_verify("tflite", inp, "fp32", tflite_out)
    out["features"]["inputs"] = inp
    return out


@pytest.mark.parametrize("mode", ["classifier", "embeddings", "features"])
def test_onnx_rewrites_keep_the_float_function(mode: str, tmp_path: Path) -> None:
    """The hard-swish / hard-sigmoid rewrite with its scales folded into the consumers' weights
    computes what the original ONNX graph computes, in onnxruntime, in every model mode."""
    import copy

    import onnx
    import onnxruntime as ort

    from edge.models import load_model
    from exporters._onnx_rewrites import rewrite_hard_activations
    from exporters.tflite import TFLiteExporter

    model = load_model(ModelSpec(weights="random", input_size=64, mode=mode))
    x = model.example_input(1)
    TFLiteExporter.to_onnx(model, model.module, tmp_path / "model.onnx")  # the exporter's own ONNX
    original = onnx.load(str(tmp_path / "model.onnx"))
    rewritten = copy.deepcopy(original)
    counts = rewrite_hard_activations(rewritten)
    assert counts["HardSwishScaleFolded"] >= counts["HardSwish"] - 3 > 0 and counts["HardSigmoidScaleFolded"] == 18
    assert not any(n.op_type in ("HardSwish", "HardSigmoid") for n in rewritten.graph.node)

    def run(m: onnx.ModelProto) -> list[np.ndarray]:
        return ort.InferenceSession(m.SerializeToString()).run(None, {"image": x.numpy()})

    for ref, got in zip(run(original), run(rewritten), strict=True):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))


def test_fp32_tflite_equals_eager(tflite_reports, random_inputs) -> None:
    rep = tflite_reports["fp32"]
    x = random_inputs.eval_images[:6]
    got = run_session(runtime_for(rep["artifact"]).load(Path(rep["artifact"]), threads=2), x)
    ref = runtime_for("pytorch").load(random_inputs.model.module).run(x)
    np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-4 * float(np.abs(ref[0]).max()))
    assert rep["delegation"]["non_delegated_ops"] == 0 and rep["delegation"]["delegated_subgraphs"] == 1


def test_feature_maps_keep_order_and_shapes(tflite_reports) -> None:
    rep = tflite_reports["features"]
    inputs = rep["inputs"]
    man = json.loads(Path(rep["manifest"]).read_text())
    assert [o["name"] for o in man["io"]["outputs"]] == inputs.model.output_names
    got = run_session(runtime_for(rep["artifact"]).load(Path(rep["artifact"])), inputs.eval_images[:2])
    ref = runtime_for("pytorch").load(inputs.model.module).run(inputs.eval_images[:2])
    assert [g.shape for g in got] == [r.shape for r in ref]
    from edge.metrics import sqnr_db

    # The deepest maps of a random-weight net amplify float summation-order differences (README),
    # so feature maps are held to 40 dB rather than to an elementwise bound.
    assert all(sqnr_db(r, g) > 40.0 for g, r in zip(got, ref, strict=True)), \
        [sqnr_db(r, g) for g, r in zip(got, ref, strict=True)]


def test_int8_is_fully_delegated_with_int8_io(tflite_reports) -> None:
    rep = tflite_reports["int8"]
    man = json.loads(Path(rep["manifest"]).read_text())
    # every 1/6 and gate alpha folded into the consumers' weights but the stem's (a residual Add reads it)
    assert man["onnx_rewrites"] == {"HardSwish": 77, "HardSigmoid": 18, "HardSwishScaleFolded": 76,
                                    "HardSigmoidScaleFolded": 18}
    assert json.loads(Path(tflite_reports["fp32"]["manifest"]).read_text())["onnx_rewrites"] == {
        "HardSwish": 0, "HardSigmoid": 18, "HardSwishScaleFolded": 0, "HardSigmoidScaleFolded": 18}
    d = man["delegation"]
    assert d["non_delegated_ops"] == 0 and d["delegated_subgraphs"] == 1, d
    inp, out = man["io"]["inputs"][0], man["io"]["outputs"][0]
    assert inp["layout"] == "NHWC" and inp["shape"] == [1, 64, 64, 3] and inp["dtype"] == "int8"
    assert inp["quantization"]["scale"] > 0 and out["dtype"] == "int8" and out["quantization"]["scale"] > 0
    assert man["options"] == {"io": "int8", "int8_lowering": "xnnpack"}
    # the head (conv_head 1344x1984 + classifier, ~40% of the weights) stays float by default
    assert man["quantization"]["float_head"] is True and man["quantization"]["observer"] == "percentile"
    # the head stays float: (the global pool's MEAN where the body's map is larger than 1x1), conv_head, ...
    assert "CONV_2D" in man["float_ops"] and man["float_ops"][-1] == "FULLY_CONNECTED", man["float_ops"]
    fp32 = json.loads(Path(tflite_reports["fp32"]["manifest"]).read_text())
    assert man["size_bytes"] < 0.72 * fp32["size_bytes"]  # measured 0.68 (23.5 vs 34.4 MB)


def test_fp16_export_opens_no_network_connection(tflite_reports) -> None:
    rep = tflite_reports["fp16"]
    assert rep["socket_attempts"] == []
    assert rep["parity"]["vs_float"]["cosine"] > 0.95  # fp16 weights on a random-weight (chaotic) net
    assert Path(rep["artifact"]).is_file()


@pytest.fixture(scope="session")
def reference_inputs(reference_weights: Path):
    spec = ModelSpec(weights=str(reference_weights), input_size=32)
    return load_inputs(spec, f"{CIFAR}::cifar10/train", 128, eval_data=f"{CIFAR}::cifar10/test", eval_size=500)


@pytest.fixture(scope="session")
def reference_tflite(reference_inputs, tflite_out: Path) -> dict:
    return export_and_verify("tflite", reference_inputs, "int8", tflite_out / "ref")


@pytest.fixture(scope="session")
def reference_tflite_onnx2tf(reference_inputs, tflite_out: Path) -> dict:
    """onnx2tf's own full-integer int8 (min/max, int8 head, no rewrites): the baseline of issue 3."""
    return export_and_verify("tflite", reference_inputs, "int8", tflite_out / "ref-onnx2tf",
                             options={"int8_lowering": "onnx2tf"})


def test_int8_reference_model_is_fully_delegated(reference_tflite: dict) -> None:
    assert reference_tflite["delegation"]["non_delegated_ops"] == 0
    assert reference_tflite["parity"]["images"] == 500


def test_int8_is_more_faithful_than_onnx2tf_default(reference_tflite: dict, reference_tflite_onnx2tf: dict) -> None:
    """Issue 3: float head + percentile ranges vs onnx2tf's full-integer min/max file, same images."""
    ours, base = reference_tflite["parity"]["vs_float"], reference_tflite_onnx2tf["parity"]["vs_float"]
    assert ours["sqnr_db"] >= base["sqnr_db"] + 3.0 and ours["agreement_top1"] >= base["agreement_top1"], (ours, base)
    # regression floors; measured 9.8 dB / 77.4 % on these 500 images (15.0 dB / 78 % on the first 64)
    assert ours["sqnr_db"] >= 9.0 and ours["agreement_top1"] >= 0.7, ours
    assert json.loads(Path(reference_tflite["manifest"]).read_text())["float_ops"][-1] == "FULLY_CONNECTED"


@pytest.mark.xfail(strict=True, reason=(
    "measured (500 CIFAR-10 test images): float head + 99.99 % percentile ranges 9.8 dB logit SQNR, 77.4 % "
    "top-1 agreement (on 64 of them: onnx2tf default 3.1 dB/23 %, ours before -2.6 dB/6 %): "
    "the weakly trained model's logits "
    "are close together, so int8 body noise still flips argmaxes. strict: fails loudly once met."))
def test_int8_meets_usable_fidelity_thresholds(reference_tflite: dict) -> None:
    f = reference_tflite["parity"]["vs_float"]
    assert f["sqnr_db"] >= 15.0 and f["agreement_top1"] >= 0.99, f


def test_corrupt_tflite_is_a_clear_error(tmp_path: Path) -> None:
    from edge.errors import EdgeError

    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"TFL3" + b"\x00" * 64)
    with pytest.raises(EdgeError, match="not a loadable .tflite"):
        runtime_for(bad).load(bad)


def test_unconvertible_model_is_a_clear_error_and_writes_nothing(unconvertible_model, tmp_path: Path) -> None:
    from edge.errors import EdgeError
    from exporters import get_exporter

    model = unconvertible_model
    with pytest.raises(EdgeError, match="could not be exported to ONNX|onnx2tf could not convert"):
        get_exporter("tflite").export(model, "fp32", tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_rejects_options_the_converter_cannot_honour(tmp_path: Path) -> None:
    from test_executorch import _assert_one_line_error, _edge

    res = _edge("export", "tflite", "--weights", "random", "--input-size", "64", "--precision", "int8",
                "--observer", "histogram", "--calib", str(IMAGENET), "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "calibrated through the TFLite converter")
    res = _edge("export", "tflite", "--weights", "random", "--input-size", "64", "--io", "int8",
                "--out", str(tmp_path / "o"))
    _assert_one_line_error(res, "--io int8 applies to --precision int8 only")
    assert not (tmp_path / "o").exists()
