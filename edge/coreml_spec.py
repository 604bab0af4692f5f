"""Read a saved `.mlpackage` and say what it really contains — on any OS.

Why: Core ML predictions need macOS, so on Linux the spec is the only first-hand evidence that a
package is what its precision promises (int8 weights, quantize/dequantize ops, fp16 tensors).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge._deps import require
from edge.errors import EdgeError
from edge.io import size_bytes

WEIGHTED_OPS = ("conv", "linear")
_CONSTEXPR_PREFIX = "constexpr_"


def _walk(operations: Any) -> Iterator[Any]:
    for op in operations:
        yield op
        for block in op.blocks:
            yield from _walk(block.operations)


def _tensor_desc(value_type: Any, dtype_name: Any) -> tuple[list[int] | None, str | None]:
    if not value_type.HasField("tensorType"):
        return None, None
    tt = value_type.tensorType
    shape = [d.constant.size if d.HasField("constant") else -1 for d in tt.dimensions]
    return shape, dtype_name(tt.dataType).lower()


def _feature(desc: Any) -> dict[str, Any]:
    kind = desc.type.WhichOneof("Type")
    out: dict[str, Any] = {"name": desc.name, "type": kind}
    if kind == "imageType":
        it = desc.type.imageType
        out.update(shape=[1, 3, int(it.height), int(it.width)], dtype="image:" + it.ColorSpace.Name(it.colorSpace))
    elif kind == "multiArrayType":
        ma = desc.type.multiArrayType
        out.update(shape=[int(s) for s in ma.shape], dtype=ma.ArrayDataType.Name(ma.dataType).lower())
    else:
        out.update(shape=None, dtype=kind.replace("Type", ""))
    return out


def inspect_mlpackage(path: Path) -> dict[str, Any]:
    """Op counts, weight storage, tensor dtypes, I/O, labels and metadata of a saved package."""
    ct = require("coremltools", "reading a Core ML package")
    from coremltools.proto import MIL_pb2

    if not (path / "Manifest.json").is_file():
        raise EdgeError(f"{path} is not a Core ML .mlpackage (no Manifest.json)")
    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError family; reported, not hidden
        raise EdgeError(f"{path} could not be read as a Core ML model: {exc}") from exc
    if spec.WhichOneof("Type") != "mlProgram":
        raise EdgeError(f"{path} is not an ML Program")
    fn = spec.mlProgram.functions["main"]
    ops = list(_walk(fn.block_specializations[fn.opset].operations))
    producer = {o.name: op for op in ops for o in op.outputs}
    dtype_name = MIL_pb2.DataType.Name
    counts = Counter(op.type for op in ops)
    weights: Counter[str] = Counter()
    for op in ops:
        if op.type in WEIGHTED_OPS and "weight" in op.inputs:
            src = producer.get(op.inputs["weight"].arguments[0].name)
            if src is None:
                weights["input"] += 1
            elif src.type.startswith(_CONSTEXPR_PREFIX):
                data = [v for k, v in src.inputs.items() if k in ("quantized_data", "data")]
                stored = _stored_dtype(src, data, producer, dtype_name)
                weights[f"{src.type}:{stored}"] += 1
            else:
                _, dt = _tensor_desc(src.outputs[0].type, dtype_name)
                weights[f"{src.type}:{dt}"] += 1
    tensor_dtypes: Counter[str] = Counter()
    for op in ops:
        if op.type == "const" or op.type.startswith(_CONSTEXPR_PREFIX):
            continue
        for o in op.outputs:
            _, dt = _tensor_desc(o.type, dtype_name)
            if dt:
                tensor_dtypes[dt] += 1
    desc = spec.description
    meta = dict(desc.metadata.userDefined)
    return {
        "spec_version": spec.specificationVersion,
        "opset": fn.opset,
        "size_bytes": size_bytes(path),
        "op_counts": dict(sorted(counts.items())),
        "weights": dict(sorted(weights.items())),
        "activation_dtypes": dict(sorted(tensor_dtypes.items())),
        "inputs": [_feature(d) for d in desc.input],
        "outputs": [_feature(d) for d in desc.output],
        "labels": _labels(ops, producer),
        "metadata": {
            "author": desc.metadata.author, "license": desc.metadata.license,
            "short_description": desc.metadata.shortDescription, "version": desc.metadata.versionString,
            **meta,
        },
    }


def _stored_dtype(src: Any, data: list[Any], producer: dict[str, Any], dtype_name: Any) -> str | None:
    """dtype of the packed weights feeding a constexpr dequantize op."""
    for arg in data:
        if arg.arguments and arg.arguments[0].name in producer:
            _, dt = _tensor_desc(producer[arg.arguments[0].name].outputs[0].type, dtype_name)
            return dt
        if arg.arguments and arg.arguments[0].HasField("value"):
            return dtype_name(arg.arguments[0].value.type.tensorType.dataType).lower()
    attr = src.attributes.get("quantized_data") or src.attributes.get("data")
    if attr is not None and attr.type.HasField("tensorType"):
        return dtype_name(attr.type.tensorType.dataType).lower()
    return None


def _labels(ops: list[Any], producer: dict[str, Any]) -> list[str] | None:
    for op in ops:
        if op.type != "classify" or "classes" not in op.inputs:
            continue
        arg = op.inputs["classes"].arguments[0]
        if arg.HasField("value"):  # an inline list of scalar tensors
            items = [v.immediateValue.tensor for v in arg.value.immediateValue.list.values]
            return [t.strings.values[0] if t.strings.values else str(t.ints.values[0]) for t in items]
        src = producer.get(arg.name)
        if src is not None:
            val = src.attributes["val"].immediateValue.tensor
            return list(val.strings.values) or [str(v) for v in val.ints.values]
    return None
