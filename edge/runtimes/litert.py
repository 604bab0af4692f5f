"""LiteRT (TFLite) interpreter with its default XNNPACK delegate, running a `.tflite` file.

Callers give NCHW float32 and get float32 outputs in the PyTorch layout: the NHWC transpose and
int8 input/output (de)quantization happen here. Falls back to tflite_runtime or tensorflow.lite
where LiteRT is absent (devices with numpy 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge._deps import has, require
from edge.errors import EdgeError, first_line
from edge.manifest import manifest_path
from edge.runtimes import register
from edge.runtimes.base import Runtime, Session

_INTERPRETERS = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow"),
)


def interpreter_class() -> tuple[Any, str]:
    for module, dist in _INTERPRETERS:
        if has(module.split(".")[0]):
            mod = require(module, "running a .tflite")
            return mod.Interpreter, dist
    raise EdgeError("running a .tflite needs ai-edge-litert (pip install ai-edge-litert), "
                    "tflite-runtime or tensorflow")


def _to_float(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        return (x.astype(np.float32) - zero) * scale
    return x.astype(np.float32)


def _from_float(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.int8, np.uint8) and scale:
        info = np.iinfo(detail["dtype"])
        return np.clip(np.rint(x / scale + zero), info.min, info.max).astype(detail["dtype"])
    return x.astype(detail["dtype"])


class LiteRTSession(Session):
    def __init__(self, interpreter: Any, output_order: list[int], layouts: list[str | None]) -> None:
        self.it = interpreter
        self.inp = interpreter.get_input_details()[0]
        outs = interpreter.get_output_details()
        self.outs = [outs[i] for i in output_order]
        self.layouts = layouts
        self.batch_size = int(self.inp["shape"][0])
        self.nhwc = len(self.inp["shape"]) == 4 and int(self.inp["shape"][-1]) in (1, 3)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        feed = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if self.nhwc else x
        self.it.set_tensor(self.inp["index"], _from_float(feed, self.inp))
        self.it.invoke()
        res = []
        for d, layout in zip(self.outs, self.layouts, strict=True):
            y = _to_float(self.it.get_tensor(d["index"]), d)
            res.append(y.transpose(0, 3, 1, 2) if y.ndim == 4 and layout == "NHWC" else y)
        return res


@register
class LiteRTRuntime(Runtime):
    name = "litert"
    suffixes = (".tflite",)

    def load(self, artifact: Path | Any, threads: int | None = None) -> Session:
        interpreter, _ = interpreter_class()
        path = Path(artifact)
        if not path.is_file():
            raise EdgeError(f"artifact {path} does not exist")
        try:
            it = interpreter(model_path=str(path), num_threads=threads or None)
            it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgeError(f"{path} is not a loadable .tflite model: {first_line(exc)}") from exc
        order, layouts = _output_order(path, it)
        return LiteRTSession(it, order, layouts)

    def version(self) -> str:
        from importlib.metadata import version

        return version(interpreter_class()[1])


def _output_order(path: Path, it: Any) -> tuple[list[int], list[str | None]]:
    """Output tensors in the manifest's order, and each one's layout (NHWC outputs are transposed
    back to NCHW). Without a manifest: the file's order, 4-D outputs taken as NHWC."""
    outs = it.get_output_details()
    manifest = manifest_path(path)
    if manifest.is_file():
        described = json.loads(manifest.read_text())["io"]["outputs"]
        by_name = {d["name"]: i for i, d in enumerate(outs)}
        names = [o.get("tensor", o["name"]) for o in described]
        if all(n in by_name for n in names):
            return [by_name[n] for n in names], [o.get("layout") for o in described]
    return list(range(len(outs))), ["NHWC" if len(d["shape"]) == 4 else None for d in outs]


def _left_out(it: Any) -> tuple[set[int], dict[int, Any], int]:
    """Indices of the ops an allocated interpreter runs in TFLite's own kernels, all ops by index,
    and how many XNNPACK subgraphs there are."""
    ops = it._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    delegate_in = {int(t) for op in delegates for t in op["inputs"]}
    delegate_out = {int(t) for op in delegates for t in op["outputs"]}
    producer = {int(t): op["index"] for op in original for t in op["outputs"]}
    by_index = {op["index"]: op for op in original}
    graph_out = {int(d["index"]) for d in it.get_output_details()}
    seeds = {producer[t] for t in (delegate_in | graph_out) - delegate_out if t in producer}
    left: set[int] = set()
    todo = list(seeds)
    while todo:
        i = todo.pop()
        if i in left:
            continue
        left.add(i)
        for t in by_index[i]["inputs"]:
            t = int(t)
            if t >= 0 and t not in delegate_out and t in producer:
                todo.append(producer[t])
    if not delegates:
        left = set(by_index)
    return left, by_index, len(delegates)


def left_out_outputs(it: Any) -> set[str]:
    """The output tensor names of the ops XNNPACK did not take in an allocated interpreter."""
    left, by_index, _ = _left_out(it)
    names = {int(d["index"]): d["name"] for d in it.get_tensor_details()}
    return {names[int(t)] for i in left for t in by_index[i]["outputs"] if int(t) in names}


def delegation(it: Any) -> dict[str, Any]:
    """How many ops XNNPACK took in an allocated interpreter, and which ran in TFLite's own
    kernels (and split the graph)."""
    from collections import Counter

    left, by_index, delegates = _left_out(it)
    kinds = Counter(by_index[i]["op_name"] for i in left)
    return {"delegated_ops": len(by_index) - len(left), "non_delegated_ops": len(left),
            "delegated_subgraphs": delegates, "non_delegated_by_op": dict(sorted(kinds.items()))}
