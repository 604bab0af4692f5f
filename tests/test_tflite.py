"""TFLite target through onnx2tf, run by the real LiteRT interpreter (XNNPACK delegate)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from checks import REFERENCE_PTQ, check_fp32_parity, check_int8_floor
from conftest import IMAGENET, assert_one_line_error, edge_main

from edge._deps import has
from edge.harness import run_session
from edge.metrics import sqnr_db
from edge.runtimes import runtime_for
from quantize import PTQConfig

if not (has("onnx2tf") and has("ai_edge_litert")):
    pytest.skip("the TFLite stack is not installed", allow_module_level=True)

pytestmark = pytest.mark.xdist_group("reference")  # the store's reference artifacts, shared with the report

TINY_INT8 = PTQConfig(calib_size=8)


@pytest.fixture(scope="session")
def tflite_reports(artifacts) -> dict[str, dict]:
    """The reference classifier in fp32 and int8 (the report's files too); timm's small test net
    for what does not depend on the network: int8 I/O, fp16, feature maps."""
    return {"fp32": artifacts.get("reference_inputs", "tflite", "fp32"),
            "int8": artifacts.get("reference_inputs", "tflite", "int8", REFERENCE_PTQ),
            "int8_io": artifacts.get("tiny_inputs", "tflite", "int8", TINY_INT8, options={"io": "int8"}),
            "fp16": artifacts.get("tiny_inputs", "tflite", "fp16"),
            "features": artifacts.get("tiny_features", "tflite", "fp32")}


@pytest.mark.parametrize("mode", ["classifier", "embeddings", "features"])
def test_onnx_rewrites_keep_the_float_function(mode: str, tmp_path: Path) -> None:
    """The hard-swish / hard-sigmoid rewrite with its scales folded into the consumers' weights
    computes what the original ONNX graph computes, in onnxruntime, in every model mode."""
    import copy

    import onnx
    import onnxruntime as ort

    from edge.models import ModelSpec, load_model
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


def test_constant_folding_is_exact_and_leaves_no_constant_axes(tmp_path: Path) -> None:
    """RepViT at opset 20 (its GELU) read ReduceMean's axes from a Constant node, which onnx2tf
    turned into a run-time tf.Mean the TFLite converter refused; folded, they are initializers
    and the graph computes the same."""
    import onnx
    import onnxruntime as ort
    import torch

    from exporters._onnx_rewrites import fold_constants

    class SE(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.gelu(self.conv(x))
            return y * torch.sigmoid(y.mean((2, 3), keepdim=True)) + torch.arange(8.0).view(1, 8, 1, 1)

    x = torch.randn(1, 3, 8, 8)
    torch.onnx.export(SE().eval(), (x,), str(tmp_path / "m.onnx"), input_names=["image"], opset_version=20,
                      dynamo=False)
    original = onnx.load(str(tmp_path / "m.onnx"))
    axes = {n.input[1] for n in original.graph.node if n.op_type == "ReduceMean"}
    assert {o for n in original.graph.node if n.op_type == "Constant" for o in n.output} & axes
    folded, gone = fold_constants(original)
    assert gone > 0 and not any(n.op_type == "Constant" for n in folded.graph.node)
    assert {t.name for t in folded.graph.initializer} >= {n.input[1] for n in folded.graph.node
                                                          if n.op_type == "ReduceMean"}
    assert [o.version for o in folded.opset_import] == [o.version for o in original.opset_import]

    def run(m: onnx.ModelProto) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString()).run(None, {"image": x.numpy()})[0]

    np.testing.assert_allclose(run(folded), run(original), rtol=0, atol=1e-6)


def test_unit_stride_pool_becomes_an_exact_conv(tmp_path: Path) -> None:
    """EfficientFormerV2's AvgPool2d(1, stride 2), which LiteRT's XNNPACK leaves out, is a
    depthwise 1×1 conv of weight 1: the same values."""
    import onnx
    import onnxruntime as ort
    import torch

    from exporters._onnx_rewrites import conv_unit_pools

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.AvgPool2d(1, 2),
                                 torch.nn.MaxPool2d(1, 2), torch.nn.AvgPool2d(2, 2))
    x = torch.randn(1, 3, 16, 16)
    torch.onnx.export(module.eval(), (x,), str(tmp_path / "m.onnx"), input_names=["image"], opset_version=17,
                      dynamo=False)
    original = onnx.load(str(tmp_path / "m.onnx"))
    rewritten = onnx.load(str(tmp_path / "m.onnx"))
    assert conv_unit_pools(rewritten) == 2  # the 2×2 pool stays
    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "Conv", "Conv", "AveragePool"]

    def run(m: onnx.ModelProto) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString()).run(None, {"image": x.numpy()})[0]

    np.testing.assert_array_equal(run(rewritten), run(original))


def test_fp32_tflite_equals_eager(tflite_reports) -> None:
    """The trained reference: NHWC transposes, output order and float conversion all exact."""
    rep = tflite_reports["fp32"]
    check_fp32_parity(Path(rep["artifact"]), rep["inputs"])
    assert rep["delegation"]["non_delegated_ops"] == 0 and rep["delegation"]["delegated_subgraphs"] == 1


def test_fault_nhwc_not_transposed_is_caught(tflite_reports, monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime wrapper that feeds NCHW data to the NHWC model as a mere reshape (the classic
    layout bug) fails the fp32 parity check test_fp32_tflite_equals_eager uses."""
    from edge.runtimes.litert import LiteRTSession, _from_float

    def reshaped(self: LiteRTSession, x: np.ndarray) -> list[np.ndarray]:
        self.it.set_tensor(self.inp["index"], _from_float(np.ascontiguousarray(x).reshape(self.inp["shape"]),
                                                          self.inp))
        self.it.invoke()
        return [self.it.get_tensor(d["index"]).astype(np.float32) for d in self.outs]

    monkeypatch.setattr(LiteRTSession, "run", reshaped)
    rep = tflite_reports["fp32"]
    with pytest.raises(AssertionError):
        check_fp32_parity(Path(rep["artifact"]), rep["inputs"])


def test_feature_maps_keep_order_and_shapes(tflite_reports) -> None:
    rep = tflite_reports["features"]
    inputs = rep["inputs"]
    man = json.loads(Path(rep["manifest"]).read_text())
    assert [o["name"] for o in man["io"]["outputs"]] == inputs.model.output_names
    got = run_session(runtime_for(rep["artifact"]).load(Path(rep["artifact"])), inputs.eval_images[:2])
    ref = runtime_for("pytorch").load(inputs.model.module).run(inputs.eval_images[:2])
    assert [g.shape for g in got] == [r.shape for r in ref]
    # The deepest maps of a random-weight net amplify float summation-order differences (README),
    # so feature maps are held to 40 dB rather than to an elementwise bound.
    assert all(sqnr_db(r, g) > 40.0 for g, r in zip(got, ref, strict=True)), \
        [sqnr_db(r, g) for g, r in zip(got, ref, strict=True)]


def test_int8_folds_hard_activations_and_keeps_the_head_float(tflite_reports) -> None:
    rep = tflite_reports["int8"]
    man = json.loads(Path(rep["manifest"]).read_text())
    # every 1/6 and gate alpha folded into the consumers' weights but the stem's (a residual Add reads it)
    def hard(m: dict) -> dict:  # (constant folding is counted beside them)
        return {k: v for k, v in m["onnx_rewrites"].items() if k.startswith("Hard")}

    assert hard(man) == {"HardSwish": 77, "HardSigmoid": 18, "HardSwishScaleFolded": 76,
                         "HardSigmoidScaleFolded": 18}
    assert hard(json.loads(Path(tflite_reports["fp32"]["manifest"]).read_text())) == {
        "HardSwish": 0, "HardSigmoid": 18, "HardSwishScaleFolded": 0, "HardSigmoidScaleFolded": 18}
    d = man["delegation"]
    assert d["non_delegated_ops"] == 0 and d["delegated_subgraphs"] == 1, d
    assert man["options"] == {"io": "float", "int8_lowering": "xnnpack"}
    # the head (conv_head 1344x1984 + classifier) stays float by default
    assert man["quantization"]["float_head"] is True and man["quantization"]["observer"] == "percentile"
    # the head stays float: (the global pool's MEAN where the body's map is larger than 1x1), conv_head, ...
    assert "CONV_2D" in man["float_ops"] and man["float_ops"][-1] == "FULLY_CONNECTED", man["float_ops"]
    fp32 = json.loads(Path(tflite_reports["fp32"]["manifest"]).read_text())
    # int8 body with the float head: between a quarter and three quarters of the fp32 file
    assert 0.25 * fp32["size_bytes"] < man["size_bytes"] < 0.75 * fp32["size_bytes"]


def test_int8_io_is_quantized_at_the_edges(tflite_reports) -> None:
    rep = tflite_reports["int8_io"]
    man = json.loads(Path(rep["manifest"]).read_text())
    assert man["delegation"]["non_delegated_ops"] == 0, man["delegation"]
    inp, out = man["io"]["inputs"][0], man["io"]["outputs"][0]
    assert inp["layout"] == "NHWC" and inp["shape"] == [1, 32, 32, 3] and inp["dtype"] == "int8"
    # the input scale covers the normalised images' range ([-2.1, 2.6] for ImageNet mean/std) in 256 steps
    assert 3.0 / 255 < inp["quantization"]["scale"] < 8.0 / 255, inp
    assert out["dtype"] == "int8" and out["quantization"]["scale"] > 0
    assert man["options"] == {"io": "int8", "int8_lowering": "xnnpack"}
    assert rep["parity"]["measured"] is True


def test_fault_int8_input_scale_off_by_two_is_caught(tflite_reports, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images quantized with twice the file's input scale (a wrapper reading the wrong tensor's
    parameters) change the int8-I/O artifact's outputs far beyond its own rounding."""
    from edge.runtimes import litert

    rep = tflite_reports["int8_io"]
    x = rep["inputs"].eval_images[:4]
    good = run_session(runtime_for(rep["artifact"]).load(Path(rep["artifact"])), x)[0]
    real = litert._from_float

    def doubled(v: np.ndarray, detail: dict) -> np.ndarray:
        scale, zero = detail["quantization"]
        return real(v, {**detail, "quantization": (2 * scale, zero)}) if v.ndim == 4 else real(v, detail)

    monkeypatch.setattr(litert, "_from_float", doubled)
    bad = run_session(runtime_for(rep["artifact"]).load(Path(rep["artifact"])), x)[0]
    assert sqnr_db(good, bad) < 10.0, sqnr_db(good, bad)


def test_fp16_equals_the_model_with_half_precision_weights(tflite_reports) -> None:
    """fp16 stores the weights in 2 bytes and XNNPACK computes in fp32 here: the file must equal the
    float model whose weights were rounded to fp16, and be about half the fp32 size."""
    import copy

    import torch

    from edge.harness import run_torch

    rep = tflite_reports["fp16"]
    inputs = rep["inputs"]
    assert rep["delegation"]["non_delegated_ops"] == 0
    rounded = copy.deepcopy(inputs.model.module)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.half().float())
    x = inputs.eval_images
    ref = run_torch(rounded, x)[0]
    got = run_session(runtime_for(rep["artifact"]).load(Path(rep["artifact"])), x)[0]
    assert sqnr_db(ref, got) > 50.0, sqnr_db(ref, got)
    params = sum(p.numel() for p in rounded.parameters())
    assert rep["size_bytes"] < 2 * params + 200_000, (rep["size_bytes"], params)  # 2 B/weight + graph


def test_onnx2tf_own_int8_lowering_runs(artifacts) -> None:
    """`--int8-lowering onnx2tf`: onnx2tf's full-integer file (its min/max calibration, int8 I/O, no
    XNNPACK rewrites) runs on LiteRT; how it compares with edge's lowering is benchmarks/bench_tflite.py's table."""
    rep = artifacts.get("tiny_inputs", "tflite", "int8", TINY_INT8, options={"int8_lowering": "onnx2tf"})
    man = json.loads(Path(rep["manifest"]).read_text())
    # no rewrite of ours but the exact constant folding every route gets
    assert man["options"]["int8_lowering"] == "onnx2tf" and set(man["onnx_rewrites"]) <= {"ConstantsFolded"}
    assert man["converter"] == "onnx2tf" and man["quantization"]["observer"] == "minmax"
    assert rep["parity"]["measured"] is True


@pytest.fixture(scope="session")
def reference_tflite(tflite_reports) -> dict:
    return tflite_reports["int8"]


def test_int8_reference_model_is_fully_delegated(reference_tflite: dict) -> None:
    assert reference_tflite["delegation"]["non_delegated_ops"] == 0
    assert reference_tflite["parity"]["images"] == 500


def test_int8_keeps_the_usable_floor(reference_tflite: dict) -> None:
    check_int8_floor(reference_tflite["parity"]["vs_float"])


@pytest.mark.xfail(strict=True, reason=(
    "not reached yet (issue 13): the converter re-calibrates with percentile ranges; on the shared reference "
    "the int8 .tflite stays below 25 dB / 95 % agreement vs float. strict: fails loudly once met."))
def test_int8_meets_usable_fidelity_thresholds(reference_tflite: dict) -> None:
    f = reference_tflite["parity"]["vs_float"]
    assert f["sqnr_db"] >= 25.0 and f["agreement_top1"] >= 0.95 and f["top1"] >= f["ref_top1"] - 0.005, f


@pytest.fixture(scope="session")
def reference_tflite_dynamic(artifacts) -> dict:
    """int8 weights, activations quantized at run time by LiteRT's XNNPACK (--activations dynamic)."""
    return artifacts.get("reference_inputs", "tflite", "int8",
                         dataclasses.replace(REFERENCE_PTQ, activations="dynamic"))


def test_dynamic_int8_meets_the_usable_bars(reference_tflite_dynamic: dict) -> None:
    """The bars static int8 misses (above), met on LiteRT with the image's own activation ranges."""
    par = reference_tflite_dynamic["parity"]
    f = par["vs_float"]
    assert par["images"] == 500 and par["measured"] is True
    assert f["sqnr_db"] >= 25.0 and f["agreement_top1"] >= 0.95 and f["top1"] >= f["ref_top1"] - 0.005, f


def test_dynamic_int8_is_one_partition_with_float_depthwise_and_head(reference_tflite_dynamic: dict) -> None:
    """XNNPACK has no dynamically quantized depthwise conv: those weights (and the float head's) are the
    int8 values dequantized, so XNNPACK runs them in float inside its one partition; the pointwise
    convs keep int8 weights."""
    import numpy as np

    from edge.runtimes.litert import interpreter_class

    man = json.loads(Path(reference_tflite_dynamic["manifest"]).read_text())
    assert man["quantization"]["activations"] == "dynamic"
    d = reference_tflite_dynamic["delegation"]
    assert d["delegated_subgraphs"] == 1 and d["non_delegated_ops"] == 0, d
    assert "DEPTHWISE_CONV_2D" in man["float_ops"] and "FULLY_CONNECTED" in man["float_ops"], man["float_ops"]
    interpreter, _ = interpreter_class()
    it = interpreter(model_path=reference_tflite_dynamic["artifact"])
    details = it.get_tensor_details()
    int8_weights = [t for t in details if t["dtype"] == np.int8 and len(t["shape"]) == 4]
    assert len(int8_weights) >= 20  # the pointwise convs
    dw = [t for t in details if t["dtype"] == np.float32 and len(t["shape"]) == 4 and t["shape"][0] == 1
          and t["shape"][1] in (3, 5) and t["shape"][1] == t["shape"][2]]
    assert len(dw) >= 20
    # the converter quantizes weights of 1024 values and more (smaller ones stay float as they are):
    # those, dequantized, lie on a per-channel grid of max|w| / 127
    big = [t for t in dw if np.prod(t["shape"]) >= 1024]
    assert len(big) >= 10
    for t in big:
        w = it.get_tensor(t["index"])
        step = np.abs(w).max(axis=(0, 1, 2)) / 127
        grid = w / np.where(step > 0, step, 1)
        np.testing.assert_allclose(grid, np.round(grid), atol=1e-3)


def test_dynamic_int8_file_keeps_its_buffers_aligned(reference_tflite_dynamic: dict) -> None:
    """edge rewrites this file itself: every buffer's data starts on 16 bytes, as the schema asks
    (force_align: 16) and TFLite's own writer does."""
    from tensorflow.lite.python import schema_py_generated as schema

    blob = Path(reference_tflite_dynamic["artifact"]).read_bytes()
    model = schema.Model.GetRootAs(blob, 0)
    starts = []
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength() > 0:
            starts.append(buf._tab.Vector(buf._tab.Offset(4)))  # noqa: SLF001 - the data's file offset
    assert len(starts) > 100 and all(s % 16 == 0 for s in starts), [s % 16 for s in starts if s % 16]


def test_corrupt_tflite_is_a_clear_error(tmp_path: Path) -> None:
    from edge.errors import EdgeError

    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"TFL3" + b"\x00" * 64)
    with pytest.raises(EdgeError, match="not a loadable .tflite"):
        runtime_for(bad).load(bad)


def test_unconvertible_model_is_a_clear_error_and_writes_nothing(unconvertible_model, tmp_path: Path) -> None:
    from edge.errors import EdgeError
    from exporters import get_exporter

    with pytest.raises(EdgeError, match="could not be exported to ONNX|onnx2tf could not convert"):
        get_exporter("tflite").export(unconvertible_model, "fp32", tmp_path)
    assert not any(tmp_path.iterdir())


def test_cli_rejects_options_the_converter_cannot_honour(tmp_path: Path) -> None:
    res = edge_main("export", "tflite", "--weights", "random", "--input-size", "64", "--precision", "int8",
                    "--observer", "histogram", "--calib", IMAGENET, "--out", tmp_path / "o")
    assert_one_line_error(res, "calibrated through the TFLite converter")
    res = edge_main("export", "tflite", "--weights", "random", "--input-size", "64", "--io", "int8",
                    "--out", tmp_path / "o")
    assert_one_line_error(res, "--io int8 applies to --precision int8 only")
    assert not (tmp_path / "o").exists()


def test_large_depthwise_convs_stay_float_in_int8(tiny_inputs, tmp_path: Path) -> None:
    """A depthwise conv of more than 25 taps (ConvNeXt's 7×7) stays float in an int8 .tflite, where
    LiteRT's XNNPACK runs it far faster than in int8; a 3×3 one is int8; both inside XNNPACK."""
    import dataclasses

    import torch

    from edge.runtimes.litert import delegation, interpreter_class
    from exporters import get_exporter

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 7, padding=3, groups=16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    model = dataclasses.replace(tiny_inputs.model, module=module)
    res = get_exporter("tflite").export(model, "int8", tmp_path, tiny_inputs.calib,
                                        dataclasses.replace(TINY_INT8, float_head=False))
    assert res.manifest["float_ops"].count("CONV_2D") + res.manifest["float_ops"].count("DEPTHWISE_CONV_2D") == 1
    interpreter, _ = interpreter_class()
    it = interpreter(model_path=str(res.artifact))
    it.allocate_tensors()
    assert delegation(it)["non_delegated_ops"] == 0
    filters = {tuple(t["shape"]): t["dtype"] for t in it.get_tensor_details()
               if len(t["shape"]) == 4 and t["shape"][0] in (1, 16) and tuple(t["shape"][1:3]) in ((7, 7), (3, 3))
               and 1 in (t["shape"][0], t["shape"][3]) and t["shape"][0] * t["shape"][3] == 16}
    assert {k[1]: v for k, v in filters.items()} == {7: np.float32, 3: np.int8}, filters


def test_explicit_pads_and_strided_slices_are_rewritten_exactly(tmp_path: Path) -> None:
    """A TF-style asymmetric "same" pad computed from the input's shape (timm's tf_ families) folds
    to constants and into its conv; LeViT's ``x[:, ::2]`` becomes reshape + unit slice + reshape; a
    pad with ones becomes a concat: the same values, no Pad and no stepped Slice left (onnx2tf
    mis-placed the pads; LiteRT's XNNPACK leaves a stepped slice and a non-zero pad out)."""
    import onnx
    import onnxruntime as ort
    import torch

    from exporters._onnx_rewrites import (
        concat_constant_pads,
        conv_absorbed_pads,
        fold_constants,
        unit_stride_slices,
    )

    class Same(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            pad_h, pad_w = max((h + 1) // 2 * 2 - 2 + 3 - h, 0), max((w + 1) // 2 * 2 - 2 + 3 - w, 0)
            y = self.conv(torch.nn.functional.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]))
            t = y.permute(0, 2, 3, 1)
            t = t[:, ::2][:, :, ::2] * 2
            return torch.nn.functional.pad(t, (0, 1), value=1.0)  # EfficientViT pads v with ones

    x = torch.randn(1, 3, 16, 16)
    torch.onnx.export(Same().eval(), (x,), str(tmp_path / "m.onnx"), input_names=["image"], opset_version=17,
                      dynamo=False)
    original = onnx.load(str(tmp_path / "m.onnx"))
    rewritten, _ = fold_constants(onnx.load(str(tmp_path / "m.onnx")))
    assert (conv_absorbed_pads(rewritten), unit_stride_slices(rewritten), concat_constant_pads(rewritten)) == (1, 2, 1)
    ops = [n.op_type for n in rewritten.graph.node]
    assert "Pad" not in ops and "Shape" not in ops, ops

    def run(m: onnx.ModelProto) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString()).run(None, {"image": x.numpy()})[0]

    np.testing.assert_array_equal(run(rewritten), run(original))


def test_a_keras_graph_failing_when_traced_names_the_layer() -> None:
    """TF reports a layer that fails while onnx2tf's Keras model is traced as "in user code:" on its
    first line; the one-line reason is the layer's own complaint (the message of
    tf_efficientnetv2_b0 before its pads were folded into the convs)."""
    from exporters.tflite import _keras_reason

    message = ("in user code:\n\n    File \"exporters/tflite.py\", line 305, in None  *\n        lambda x: ...\n\n"
               "    ValueError: Exception encountered when calling layer 'tf.nn.convolution_11' (type TFOpLambda).\n"
               "    \n    Depth of input (17) is not a multiple of input depth of filter (16) for '{{node m}} = ...'\n")
    assert _keras_reason(ValueError(message)) == (
        "Exception encountered when calling layer 'tf.nn.convolution_11' (type TFOpLambda). "
        "Depth of input (17) is not a multiple of input depth of filter (16)")
    assert _keras_reason(ValueError("plain")) == "plain"


def _depthwise_net() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 7, padding=3, groups=16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()


def test_float_depthwise_leaves_every_depthwise_conv_float(tiny_inputs, tmp_path: Path) -> None:
    """--float-depthwise: every depthwise conv float (found by type), the other convs int8, on both
    targets that quantize with static ranges here; XNNPACK still takes the whole graph."""
    import torch

    from edge.runtimes.litert import delegation, interpreter_class
    from exporters import get_exporter
    from quantize import quantize

    model = dataclasses.replace(tiny_inputs.model, module=_depthwise_net())
    cfg = dataclasses.replace(TINY_INT8, float_head=False, float_depthwise=True)
    # TFLite: the file's depthwise filters are float, the first conv's int8
    res = get_exporter("tflite").export(model, "int8", tmp_path / "t", tiny_inputs.calib, cfg)
    it = interpreter_class()[0](model_path=str(res.artifact))
    it.allocate_tensors()
    assert delegation(it)["non_delegated_ops"] == 0
    dtypes = {tuple(t["shape"]): t["dtype"] for t in it.get_tensor_details() if len(t["shape"]) == 4
              and tuple(t["shape"][1:3]) in ((7, 7), (3, 3)) and t["shape"][0] * t["shape"][3] in (16, 48)}
    assert sorted((k[1], v.__name__) for k, v in dtypes.items()) == [
        (3, "float32"), (3, "int8"), (7, "float32")], dtypes
    # ExecuTorch's program: no dequantized weight on a depthwise conv, one on the first conv
    program = quantize(model.module, model.example_input(), tiny_inputs.calib, cfg, "xnnpack")
    convs = [n for n in program.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    quantized = {(n.args[6] if len(n.args) > 6 else 1) > 1: "dequantize" in str(n.args[1].target)
                 for n in convs}
    assert len(convs) == 3 and quantized == {False: True, True: False}, quantized
    pte = get_exporter("executorch").export(model, "int8", tmp_path / "e", tiny_inputs.calib, cfg)
    assert pte.manifest["delegation"]["non_delegated_by_op"].keys() <= {"getitem"}, pte.manifest["delegation"]
