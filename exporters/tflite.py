"""TFLite/LiteRT `.tflite` through ONNX and onnx2tf, in fp32, fp16 or full INT8 — offline.

Why the ONNX rewrite (exporters/_onnx_rewrites.py): LiteRT's XNNPACK delegate runs HARD_SWISH and
RELU_0_TO_1 (onnx2tf's hard-sigmoid) in float only, so in onnx2tf's default int8 file each of
fbnetv3_b's 77 hard-swishes and 18 squeeze-excite gates fell back to TFLite's reference kernels and
cut the graph into 96 XNNPACK partitions (4x slower than fp32). Written as Add → Clip(0, 6) → Mul,
with the 1/6 folded into the consumers' weights, every op stays in XNNPACK. In fp32 and fp16 only
the hard-sigmoid is rewritten: XNNPACK runs the fused float HARD_SWISH itself.

Why int8 is quantized here and not by onnx2tf (`-oiqt`): its full-integer file quantizes the
classifier head (fbnetv3_b's post-pool conv_head + hard-swish has a few channels ~100x the rest)
and uses min/max ranges, which left the CIFAR-10 reference model at -2 dB logit SQNR. We let the
TF converter calibrate onnx2tf's saved model only, replace each activation range by the batch-mean
percentile range of our calibration images (PTQConfig.observer/percentile, as PT2E's observer),
and quantize with the head's ops denylisted (PTQConfig.float_head): the head stays float behind
one dequantize, the body stays one XNNPACK int8 partition (docs/tflite.md has the figures).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge._deps import require
from edge.errors import EdgeError, first_line
from edge.models import LoadedModel
from edge.progress import say
from exporters import register
from exporters._onnx_rewrites import (
    concat_constant_pads,
    conv_absorbed_pads,
    conv_unit_pools,
    fold_constants,
    rewrite_hard_activations,
    unit_stride_slices,
    zero_pad_max_pools,
)
from exporters.base import Converted, Exporter, ExportRequest, Option
from quantize import PTQConfig

# onnx2tf reads this file from the working directory for its test inference, else downloads it.
_SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"


@contextlib.contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    """onnx2tf looks for its sample data in the current directory (not thread-safe, like chdir)."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@dataclass(frozen=True)
class _Route:
    """How one TFLite artifact is made, decided once from the precision and the options."""

    rewrite: tuple[str, ...]  # ONNX ops rewritten for XNNPACK (exporters/_onnx_rewrites.py)
    ours: bool  # int8 quantized here (TFLite's quantizer on onnx2tf's saved model)
    onnx2tf_int8: bool  # int8 from onnx2tf's own full-integer quantization
    produced: str | None  # the file onnx2tf writes that becomes the artifact (None: converted here)

    @property
    def converter(self) -> str:
        if self.ours:
            return "onnx2tf + TFLite quantizer"
        return "onnx2tf" if self.produced else "onnx2tf + TFLite converter"


def _route(precision: str, opts: dict[str, str], dynamic: bool = False) -> _Route:
    if precision != "int8" or dynamic:  # float activations keep the converter's fused HARD_SWISH, which
        return _Route(("HardSigmoid",), precision == "int8", False, None)  # XNNPACK runs fast in float
    if opts["int8_lowering"] == "xnnpack":
        return _Route(("HardSwish", "HardSigmoid"), True, False, None)
    name = "model_full_integer_quant.tflite" if opts["io"] == "int8" else "model_integer_quant.tflite"
    return _Route((), False, True, name)


@register
class TFLiteExporter(Exporter):
    name = "tflite"
    title = "TFLite"
    requires = ("onnx", "onnx2tf", "tensorflow")
    suffix = ".tflite"
    precisions = ("fp32", "fp16", "int8")
    calibrates_itself = True  # the TFLite converter calibrates on our images itself
    # XNNPACK's scheme is TFLite's (int8 asymmetric activations, symmetric per-channel weights)
    qat_quantizer = "xnnpack"
    runtime = "litert"
    build_cost = {"fp32": 1.0, "int8": 2.0}  # relative, for the report's work queue
    default_observer = "percentile"
    versions = ("torch", "onnx", "onnx2tf", "tensorflow", "ai-edge-litert", "timm")
    options = (
        Option("io", "float", ("float", "int8"), "int8 model: float32 or int8 input/output tensors"),
        Option("int8_lowering", "xnnpack", ("xnnpack", "onnx2tf"),
               "int8 hard-swish/hard-sigmoid: xnnpack = rewritten so XNNPACK runs them in int8; "
               "onnx2tf = its default (they fall back to TFLite kernels)"),
    )

    def effective_config(self, config: PTQConfig) -> PTQConfig:
        """onnx2tf's own int8 (--int8-lowering onnx2tf) is full-integer with min/max ranges."""
        if self.opts["int8_lowering"] == "onnx2tf" and config.activations == "static":
            return dataclasses.replace(config, float_head=False, observer="minmax")
        return config

    def validate(self, precision: str, quant: PTQConfig | None) -> None:
        if self.opts["io"] == "int8" and precision != "int8":
            raise EdgeError("--io int8 applies to --precision int8 only")
        if quant is not None and quant.activations == "dynamic" and (self.opts["io"] == "int8"
                                                                     or self.opts["int8_lowering"] != "xnnpack"):
            raise EdgeError("--activations dynamic keeps float activations between int8 weights: it takes neither "
                            "--io int8 nor --int8-lowering onnx2tf")
        if quant is not None and (quant.observer not in (None, "minmax", "percentile") or quant.keep_float):
            raise EdgeError("TFLite int8 is calibrated through the TFLite converter (minmax or percentile "
                            "ranges, float head or not): --observer histogram or search and --keep-float are not "
                            "available for this target")

    def convert(self, request: ExportRequest, program: Any, dest: Path) -> Converted:
        import numpy as np

        model, precision = request.model, request.recipe.precision
        cal = request.recipe.calibration
        dynamic = isinstance(cal, PTQConfig) and cal.activations == "dynamic"
        route = _route(precision, request.recipe.options, dynamic)
        onnx = require("onnx", "exporting to TFLite")
        with tempfile.TemporaryDirectory(prefix="edge-tflite-") as tmp:
            work = Path(tmp)
            onnx_path = work / "model.onnx"
            graph, folded = fold_constants(self.to_onnx(model, program, onnx_path))
            rewritten = rewrite_hard_activations(graph, route.rewrite) if route.rewrite else {}
            if folded:
                rewritten["ConstantsFolded"] = folded
            for key, count in (("MaxPoolZeroPad", zero_pad_max_pools(graph)),
                               ("UnitPoolAsConv", conv_unit_pools(graph)),
                               ("PadIntoConv", conv_absorbed_pads(graph)),
                               ("StridedSliceAsReshape", unit_stride_slices(graph)),
                               ("ConstantPadAsConcat", concat_constant_pads(graph))):
                if count:
                    rewritten[key] = count
            if rewritten:
                onnx.save(graph, str(onnx_path))
            calib = _calibration_arrays(model, request.calib_images, work)
            onnx2tf = require("onnx2tf", "exporting to TFLite")
            kwargs: dict[str, Any] = {}
            if route.onnx2tf_int8:
                kwargs = {
                    "output_integer_quantized_tflite": True,
                    "quant_type": "per-channel",
                    "custom_input_op_name_np_data_path": [["image", str(calib), [[[[0.0, 0.0, 0.0]]]],
                                                           [[[[1.0, 1.0, 1.0]]]]]],
                    "input_quant_dtype": "int8",
                    "output_quant_dtype": "int8",
                }
            # onnx2tf and TensorFlow print the saved model's signature on stdout; keep stdout for
            # the CLI's own result (`--json`)
            with _working_dir(work), contextlib.redirect_stdout(sys.stderr):
                try:
                    # Only onnx2tf's own int8 needs its files; otherwise it builds the Keras model
                    # and edge converts it once, from a concrete function (onnx2tf would also save a
                    # SavedModel and convert fp32 and fp16 through two more saves: most of the time)
                    keras_model = onnx2tf.convert(
                        input_onnx_file_path=str(onnx_path), output_folder_path=str(work / "tf"),
                        non_verbose=True, disable_model_save=not route.onnx2tf_int8,
                        copy_onnx_input_output_names_to_tflite=route.onnx2tf_int8, **kwargs)
                except SystemExit as exc:  # onnx2tf calls sys.exit() on conversion errors
                    raise EdgeError(f"onnx2tf could not convert {model.spec.name} (exit {exc.code}); "
                                    "its messages are above") from None
                except (ValueError, TypeError, NotImplementedError, KeyError, RuntimeError, AttributeError,
                        IndexError) as exc:  # onnx2tf's own code failing on this graph (LeViT: AttributeError)
                    raise EdgeError(f"onnx2tf could not convert {model.spec.name}: {first_line(exc)}") \
                        from exc
            float_ops: list[str] = []
            if route.produced is not None:
                produced = work / "tf" / route.produced
                if not produced.is_file():
                    raise EdgeError(f"onnx2tf did not write {route.produced}; see its messages above")
                dest.write_bytes(produced.read_bytes())
            elif route.ours:
                assert isinstance(cal, PTQConfig)  # an AutoConfig never reaches here (Exporter._auto_recipe)
                if dynamic:
                    blob, float_ops = _dynamic_int8(model, keras_model, cal)
                else:
                    blob, float_ops = self._quantize(model, keras_model, np.load(calib), cal)
                dest.write_bytes(blob)
            else:
                dest.write_bytes(_float_tflite(keras_model, precision))
        from edge.runtimes.litert import delegation, interpreter_class

        interpreter, _ = interpreter_class()
        it = interpreter(model_path=str(dest))
        try:
            it.allocate_tensors()
        except RuntimeError as exc:  # XNNPACK refused the graph (e.g. int8 scales outside its ranges)
            hint = " (try --int8-lowering onnx2tf)" if route.rewrite else ""
            raise EdgeError(f"LiteRT cannot load the converted {precision} model: {first_line(exc)}{hint}") from exc
        inp = it.get_input_details()[0]
        io = {
            "inputs": [{"name": "image", "shape": [int(s) for s in inp["shape"]], "layout": "NHWC",
                        "dtype": np.dtype(inp["dtype"]).name, "quantization": _qparams(inp)}],
            "outputs": [{"name": name, "tensor": d["name"], "shape": [int(s) for s in d["shape"]],
                         "layout": d["layout"],  # onnx2tf keeps some 4-D outputs NCHW, some NHWC
                         "dtype": np.dtype(d["dtype"]).name, "quantization": _qparams(d)}
                        for name, d in zip(model.output_names, _match_outputs(model, program, it), strict=True)],
        }
        return Converted(io=io, extra={"backend": "xnnpack", "delegation": delegation(it),
                                       "onnx_rewrites": rewritten, "converter": route.converter,
                                       **({"float_ops": float_ops} if precision == "int8" else {})})

    def _quantize(self, model: LoadedModel, keras_model: Any, calib: Any,
                  quant: PTQConfig) -> tuple[bytes, list[str]]:
        """int8 .tflite from onnx2tf's Keras model: calibrate, set percentile ranges, quantize with
        the head and the ops XNNPACK runs in float only denylisted. Returns the file and the op
        types left float."""
        tf = require("tensorflow", "exporting to TFLite")
        from tensorflow.lite.python import convert as tfl_convert
        from tensorflow.lite.tools import flatbuffer_utils

        converter = _converter(keras_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in calib)
        converter._experimental_calibrate_only = True  # noqa: SLF001 - the debugger's own route
        say(f"tflite: calibrating on {len(calib)} images")
        with contextlib.redirect_stdout(sys.stderr):
            calibrated = converter.convert()
        fb = flatbuffer_utils.convert_bytearray_to_object(calibrated)
        graph = fb.subgraphs[0]
        if quant.observer == "percentile":
            _set_percentile_ranges(calibrated, graph, calib, quant.percentile, quant.calib_batch)
        _fit_xnnpack_ranges(fb, graph)
        head = _head_ops(model, graph) if quant.float_head else []
        # ops LiteRT's XNNPACK delegate runs in float only: int8, they fell back to TFLite's own
        # kernels one by one (the matrix: RepViT's GELU, ConvNeXt's LayerNorm); float, XNNPACK runs
        # them between a dequantize and a quantize it also takes
        head += [op for op in graph.operators if op not in head
                 and (flatbuffer_utils.opcode_to_name(fb, op.opcodeIndex) in _XNNPACK_FLOAT_ONLY
                      or _float_depthwise(fb, graph, op, quant.float_depthwise))]
        io_type = tf.int8 if self.opts["io"] == "int8" else tf.float32
        float_names = [_tensor_name(graph, op.outputs[0]) for op in head]

        def convert(denylist: list[str]) -> bytes:
            with contextlib.redirect_stdout(sys.stderr):
                return bytes(tfl_convert.mlir_quantize(
                    bytes(flatbuffer_utils.convert_object_to_bytearray(fb)), fully_quantize=self.opts["io"] == "int8",
                    input_data_type=io_type, output_data_type=io_type, denylisted_nodes=denylist or None))

        blob = convert(float_names)
        # what XNNPACK still refused in int8 (ConvNeXt's LayerNorm SUB/ADD around the float RSQRT)
        # goes float too, once: XNNPACK then takes it, where TFLite's kernels ran it op by op
        ours = {_tensor_name(graph, op.outputs[0]) for op in graph.operators}
        refused = sorted((_refused_by_xnnpack(blob) & ours) - set(float_names))
        if refused:
            float_names += refused
            blob = convert(float_names)
        kept = set(float_names)
        codes = [flatbuffer_utils.opcode_to_name(fb, op.opcodeIndex) for op in graph.operators
                 if _tensor_name(graph, op.outputs[0]) in kept]
        return blob, codes

    @staticmethod
    def to_onnx(model: LoadedModel, program: Any, path: Path) -> Any:
        """Write ``path`` and return its ModelProto. Opset 17, or 20 where the graph has GELU: before
        opset 20 ONNX spells GELU with Erf, which TFLite has no builtin for (the converter refused
        ConvNeXt and RepViT); opset 20's Gelu becomes TFLite's GELU, which XNNPACK runs."""
        import onnx
        import torch

        def export(opset: int) -> Any:
            try:
                torch.onnx.export(program, (model.example_input(1),), str(path), input_names=["image"],
                                  output_names=model.output_names, opset_version=opset, dynamo=False)
            except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
                raise EdgeError(f"{model.spec.name} could not be exported to ONNX: {first_line(exc)}") from exc
            return onnx.load(str(path))

        proto = export(17)
        return export(20) if any(n.op_type == "Erf" for n in proto.graph.node) else proto

# TFLite builtins whose int8 form LiteRT's XNNPACK delegate does not take (and no rewrite above spells
# with ops it does): kept float in an int8 model
_XNNPACK_FLOAT_ONLY = frozenset({"GELU", "SQUARED_DIFFERENCE", "RSQRT"})


# Beyond this many taps XNNPACK's depthwise kernels go multipass, where LiteRT's int8 path runs
# several times slower than its float one (benchmarks/bench_tflite_ops.py --kinds "depthwise conv 7x7")
_DEPTHWISE_INT8_MAX_TAPS = 25


def _dynamic_int8(model: LoadedModel, keras_model: Any, quant: PTQConfig) -> tuple[bytes, list[str]]:
    """int8 weights, float activations that LiteRT's XNNPACK quantizes at run time, per row, with the
    range of the image at hand (the converter's dynamic-range quantization: the calibration images
    are not used). Ops XNNPACK has no dynamic kernel for (depthwise convolutions), and the head with
    ``float_head``,
    get their int8 weights back as float — the same values, dequantized — so XNNPACK runs them in
    float inside its one partition instead of leaving them to TFLite's hybrid kernels."""
    tf = require("tensorflow", "exporting to TFLite")
    from tensorflow.lite.tools import flatbuffer_utils

    converter = _converter(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    say("tflite: int8 weights, activations quantized at run time (no calibration)")
    try:
        with contextlib.redirect_stdout(sys.stderr):
            blob = bytes(converter.convert())
    except (ValueError, RuntimeError) as exc:
        raise EdgeError(f"the TFLite converter could not quantize the model: {first_line(exc)}") from exc
    fb = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    graph = fb.subgraphs[0]
    head = _head_ops(model, graph) if quant.float_head else []
    refused = _refused_by_xnnpack(blob)
    weights = {w for op in graph.operators if (w := _hybrid_weight(graph, op)) is not None
               and (op in head or _tensor_name(graph, op.outputs[0]) in refused)}
    readers = [op for op in graph.operators if any(int(i) in weights for i in op.inputs)]
    for index in sorted(weights):
        _dequantize_weight(fb, graph, index)
    codes = [flatbuffer_utils.opcode_to_name(fb, op.opcodeIndex) for op in readers]  # every op now float
    return _serialize(fb), codes


def _serialize(fb: Any) -> bytes:
    """The model object as .tflite bytes with every buffer's data 16-byte aligned, as the schema
    asks (``force_align: 16``) and TFLite's own writer does: the Python object API drops it, which
    left float weights aligned only by the luck of the sizes before them."""
    import flatbuffers
    import numpy as np

    class Aligned(flatbuffers.Builder):  # type: ignore[misc]
        def CreateNumpyVector(self, x: Any) -> int:  # noqa: N802 - flatbuffers' name
            if x.dtype == np.uint8:  # a Buffer's data (the schema's only ubyte vector of weights)
                self.Prep(16, x.size)
            return int(super().CreateNumpyVector(x))

    builder = Aligned(1024)
    builder.Finish(fb.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _hybrid_weight(graph: Any, op: Any) -> int | None:
    """The int8 constant weight of a hybrid op (float input, int8 filter), else None."""
    from tensorflow.lite.python.schema_py_generated import TensorType

    if len(op.inputs) < 2 or op.inputs[0] < 0 or op.inputs[1] < 0:
        return None
    x, w = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    return int(op.inputs[1]) if x.type == TensorType.FLOAT32 and w.type == TensorType.INT8 else None


def _dequantize_weight(fb: Any, graph: Any, index: int) -> None:
    """Tensor ``index`` (int8, per-tensor or per-channel scales) rewritten as the float32 values it
    stands for, in place."""
    import numpy as np
    from tensorflow.lite.python.schema_py_generated import TensorType

    t = graph.tensors[index]
    q, buf = t.quantization, fb.buffers[t.buffer]
    sharing = [i for i, other in enumerate(graph.tensors) if other.buffer == t.buffer and i != index]
    if buf.data is None or q is None or q.scale is None or sharing:
        raise EdgeError(f"the TFLite converter wrote weight {_tensor_name(graph, index)!r} in a form edge cannot "
                        "turn back into float (no data, no scales, or a buffer shared with another tensor)")
    values = np.frombuffer(bytes(bytearray(buf.data)), np.int8).reshape([int(d) for d in t.shape])
    scale = np.asarray(q.scale, np.float32)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.float32)
    shape = [1] * values.ndim
    if scale.size > 1:
        shape[int(q.quantizedDimension)] = -1
    real = (values.astype(np.float32) - zero.reshape(shape)) * scale.reshape(shape)
    buf.data = np.frombuffer(real.astype(np.float32).tobytes(), np.uint8)
    t.type, t.quantization = TensorType.FLOAT32, None


def _float_depthwise(fb: Any, graph: Any, op: Any, every: bool) -> bool:
    """A depthwise convolution (DEPTHWISE_CONV_2D, or the grouped CONV_2D with one input channel per
    group that onnx2tf also writes) kept float in int8: with ``every`` (--float-depthwise) all of
    them, else those of more than _DEPTHWISE_INT8_MAX_TAPS taps."""
    from tensorflow.lite.tools import flatbuffer_utils

    code = flatbuffer_utils.opcode_to_name(fb, op.opcodeIndex)
    if code not in ("DEPTHWISE_CONV_2D", "CONV_2D"):
        return False
    x, w = (list(graph.tensors[i].shape) for i in op.inputs[:2])
    if len(w) != 4 or (not every and w[1] * w[2] <= _DEPTHWISE_INT8_MAX_TAPS):
        return False
    return code == "DEPTHWISE_CONV_2D" or (w[3] == 1 and len(x) == 4 and x[3] > 1)


def _converter(keras_model: Any) -> Any:
    """A TFLite converter for onnx2tf's Keras model through one concrete function (frozen in
    place: no SavedModel is written), builtin ops only, so XNNPACK can take the whole graph."""
    tf = require("tensorflow", "exporting to TFLite")
    spec = tf.TensorSpec([int(d) for d in keras_model.inputs[0].shape], tf.float32)
    try:
        fn = tf.function(lambda x: keras_model(x, training=False)).get_concrete_function(spec)
    except ValueError as exc:  # onnx2tf built a graph whose layers do not fit (tf_efficientnetv2_b0's pads)
        raise EdgeError(f"onnx2tf could not convert the model: its Keras graph fails when traced: "
                        f"{_keras_reason(exc)}") from exc
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _keras_reason(exc: BaseException) -> str:
    """The layer's own complaint from a TF "in user code:" error (its first line says nothing)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("ValueError: Exception encountered when calling layer"):
            detail = next((x for x in lines[i + 1:] if x), "")
            return f"{line.removeprefix('ValueError: ')} {detail.split(' for ')[0]}".strip()
    return first_line(exc)


def _float_tflite(keras_model: Any, precision: str) -> bytes:
    """fp32, or fp16 weights (dequantized to fp32 at load where the CPU computes in fp32)."""
    tf = require("tensorflow", "exporting to TFLite")
    converter = _converter(keras_model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return bytes(converter.convert())
    except (ValueError, RuntimeError) as exc:  # an op without a TFLite builtin
        raise EdgeError(f"the TFLite converter could not convert the model: {first_line(exc)}") from exc


def _calibration_arrays(model: LoadedModel, images: Any, work: Path) -> Path:
    """onnx2tf's sample file (20 images, 128 px, [0, 1]) and the int8 calibration set (our
    normalised images, NHWC) — both from the user's calibration images, never a download."""
    import numpy as np
    import torch

    if images is None:  # fp32/fp16: seeded noise around the mean image is enough for onnx2tf's check
        images = model.example_input(4) * 0.5
    pre = model.preprocessing()
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1)
    pixels = (images * std + mean).clamp(0, 1)
    sample = torch.nn.functional.interpolate(pixels, size=(128, 128), mode="bilinear", align_corners=False)
    idx = torch.arange(20) % sample.shape[0]
    np.save(work / _SAMPLE_FILE, sample[idx].permute(0, 2, 3, 1).numpy().astype(np.float32))
    calib = work / "calibration.npy"
    np.save(calib, images.permute(0, 2, 3, 1).numpy().astype(np.float32))
    return calib


def _match_outputs(model: LoadedModel, program: Any, it: Any) -> list[dict[str, Any]]:
    """The .tflite outputs in the PyTorch model's order with the layout each came out in: onnx2tf
    drops the ONNX output names and transposes some 4-D outputs and not others. Matched by shape;
    where a shape reads the same in NCHW and NHWC (C = H = W), by value: the interpreter's output
    on one example against the program's, both ways."""
    import numpy as np
    import torch

    from edge.runtimes.litert import _from_float, _to_float

    example = model.example_input(1)
    with torch.no_grad():
        ref = program(example)
    ref = list(ref) if isinstance(ref, (list, tuple)) else [ref]
    outs = it.get_output_details()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], _from_float(example.permute(0, 2, 3, 1).numpy(), inp))
    it.invoke()
    values = {d["index"]: _to_float(it.get_tensor(d["index"]), d) for d in outs}
    left = list(outs)
    ordered = []
    for r in ref:
        ref_np = r.numpy()
        candidates = [("NCHW" if r.dim() == 4 else None, ref_np)]
        if r.dim() == 4:
            candidates.append(("NHWC", ref_np.transpose(0, 2, 3, 1)))
        hits = [(layout, d, float(np.abs(values[d["index"]] - want).max()))
                for layout, want in candidates for d in left if list(d["shape"]) == list(want.shape)]
        if not hits:
            got = [[int(v) for v in d["shape"]] for d in outs]
            raise EdgeError(f"the .tflite has no output of shape {list(r.shape)} in NCHW or NHWC (outputs: {got})")
        layout, hit, _ = min(hits, key=lambda h: h[2])
        left = [d for d in left if d["index"] != hit["index"]]
        ordered.append({**hit, "layout": layout})
    return ordered


def _refused_by_xnnpack(blob: bytes) -> set[str]:
    """Output names of the ops LiteRT's XNNPACK delegate leaves to TFLite's kernels in ``blob``;
    empty when it cannot load (the exporter's own check says why)."""
    from edge.runtimes.litert import interpreter_class, left_out_outputs

    interpreter, _ = interpreter_class()
    it = interpreter(model_content=blob)
    try:
        it.allocate_tensors()
    except RuntimeError:
        return set()
    return left_out_outputs(it)


def _tensor_name(graph: Any, index: int) -> str:
    name = graph.tensors[index].name
    return name.decode() if isinstance(name, bytes) else str(name)


def _set_percentile_ranges(calibrated: bytes, graph: Any, calib: Any, percentile: float, batch: int) -> None:
    """Each calibrated activation range := the mean over batches of its low/high percentiles
    (quantize/observers.py's rule), measured by running the calibrated float model in LiteRT."""
    import numpy as np

    from edge.runtimes.litert import interpreter_class

    interpreter, _ = interpreter_class()
    it = interpreter(model_content=calibrated, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    ranged = [i for i, t in enumerate(graph.tensors)
              if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1]
    sums = {i: np.zeros(2) for i in ranged}
    batches = 0
    for start in range(0, len(calib), batch):
        seen: dict[int, list[Any]] = {i: [] for i in ranged}
        for x in calib[start:start + batch]:
            it.set_tensor(inp, x[None])
            it.invoke()
            for i in ranged:
                seen[i].append(it.get_tensor(i).ravel().copy())
        for i in ranged:
            sums[i] += np.percentile(np.concatenate(seen[i]), [100 - percentile, percentile])
        batches += 1
    for i in ranged:
        lo, hi = sums[i] / batches
        q = graph.tensors[i].quantization
        q.min, q.max = [float(min(lo, 0.0))], [float(max(hi, 0.0))]


# XNNPACK's int8 multiply needs input_a_scale * input_b_scale / output_scale below 2^8; keep it
# within half of that
_MUL_RATIO = 128.0
_CLAMPING = (2, 3)  # TFLite's ActivationFunctionType RELU_N1_TO_1, RELU6
# input scale / output scale that LiteRT's XNNPACK delegate takes for one-input-per-scale ops
# (its CheckTensorsInputOutputScale bounds), with a factor 2 of margin for the converter's nudging
_IN_OUT_RATIO = {"ADD": (2.0 / 1024.0, 128.0), "SUB": (2.0 / 1024.0, 128.0), "MEAN": (2.0 / 256.0, 128.0)}


def _range_scale(graph: Any, i: int) -> float | None:
    """The int8 scale a calibrated min/max gives tensor ``i`` (None: not calibrated, a constant)."""
    q = graph.tensors[i].quantization
    if q is None or q.min is None or q.max is None or len(q.min) != 1:
        return None
    return (max(float(q.max[0]), 0.0) - min(float(q.min[0]), 0.0)) / 255.0


def _widen(graph: Any, i: int, scale: float) -> None:
    """Tensor ``i``'s calibrated range widened (about zero, keeping its shape) to int8 scale ``scale``."""
    q = graph.tensors[i].quantization
    lo, hi = min(float(q.min[0]), 0.0), max(float(q.max[0]), 0.0)
    want = scale * 255.0
    grow = want / (hi - lo) if hi > lo else None
    q.min, q.max = ([lo * grow], [hi * grow]) if grow else ([0.0], [want])


def _fit_xnnpack_ranges(fb: Any, graph: Any) -> None:
    """Widen calibrated ranges that XNNPACK could not run in int8, so it takes the whole graph
    instead of refusing it at load (a coarser scale where values are tiny beside their neighbours'
    costs little):

    - a two-activation MUL whose product of input scales is too large for its output's (where
      x * relu6(x + 3), edge's hard-swish, sees mostly x < -3, its output range is tiny);
    - an ADD/SUB/MEAN whose input and output scales are too far apart: the output widened where
      an input is far coarser, else the input far finer than the output widened (a residual
      branch whose values vanish beside the sum's)."""
    scale = functools.partial(_range_scale, graph)
    for _ in range(8):  # a widened tensor is another op's input or output: repeat until none changes
        if not _fit_pass(fb, graph, scale):
            break


def _fit_pass(fb: Any, graph: Any, scale: Any) -> bool:
    """One pass of ``_fit_xnnpack_ranges`` over the ops; True if it widened a range."""
    from tensorflow.lite.tools import flatbuffer_utils

    widened = False
    for op in graph.operators:
        name = flatbuffer_utils.opcode_to_name(fb, op.opcodeIndex)
        if name == "MUL" and len(op.inputs) == 2:
            sa, sb, so = scale(op.inputs[0]), scale(op.inputs[1]), scale(op.outputs[0])
            if sa and sb and so is not None and (so == 0 or sa * sb / so >= _MUL_RATIO * 1.01):
                _widen(graph, op.outputs[0], sa * sb / _MUL_RATIO)
                widened = True
        elif name in _IN_OUT_RATIO:
            low, high = _IN_OUT_RATIO[name]
            out, so = int(op.outputs[0]), scale(op.outputs[0])
            # 0: a range [0, 0] (an all-zero branch); None: a constant, not calibrated
            ins = {int(i): scale(i) for i in (op.inputs if name != "MEAN" else op.inputs[:1]) if i >= 0}
            ins = {i: float(si) for i, si in ins.items() if si is not None}
            if not ins or so is None:
                continue
            coarsest = max(ins.values())
            # an output clamped by a fused RELU6 / RELU_N1_TO_1 keeps its range: widened, the gate
            # or hard-swish it feeds would lose its precision (the op stays out of XNNPACK instead)
            clamped = getattr(op.builtinOptions, "fusedActivationFunction", 0) in _CLAMPING
            if coarsest and not clamped and (not so or coarsest / so >= high * 1.01):
                _widen(graph, out, coarsest / high)
                so, widened = coarsest / high, True
            for i, si in ins.items() if so else ():
                if si / so < low / 1.01:
                    _widen(graph, i, so * low)
                    widened = True
    return widened


def _head_ops(model: LoadedModel, graph: Any) -> list[Any]:
    """The ops after the body's output (the classifier head: pool, conv_head, act, classifier),
    found as the descendants of the last op whose output has the body output's NHWC shape."""
    import torch

    from quantize.ptq import head_modules

    names = head_modules(model.module)
    if not names:
        return []
    shape: list[int] = []
    first = getattr(model.module, names[0])
    hook = first.register_forward_pre_hook(lambda _m, args: shape.extend(args[0].shape))
    try:
        with torch.no_grad():
            model.module(model.example_input(1))
    finally:
        hook.remove()
    if len(shape) != 4:
        return []
    body_out = [shape[0], shape[2], shape[3], shape[1]]
    ops = list(graph.operators)
    last = max((k for k, op in enumerate(ops)
                if [int(v) for v in graph.tensors[op.outputs[0]].shape] == body_out), default=None)
    if last is None:
        return []
    live = {int(t) for t in ops[last].outputs}
    head = []
    for op in ops[last + 1:]:
        if any(int(t) in live for t in op.inputs):
            head.append(op)
            live |= {int(t) for t in op.outputs}
    return head


def _qparams(detail: dict[str, Any]) -> dict[str, float] | None:
    scale, zero = detail["quantization"]
    return {"scale": float(scale), "zero_point": int(zero)} if scale else None
