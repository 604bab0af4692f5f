"""Float-exact ONNX rewrites that decide how fast the int8 `.tflite` runs in LiteRT's XNNPACK.

Why: the XNNPACK delegate runs HARD_SWISH and RELU_0_TO_1 in float only, so an int8 graph that
keeps them falls back to TFLite's reference kernels op by op (onnx2tf's default: 96 partitions,
4x slower than fp32). Written as Add -> Clip -> Mul they stay in XNNPACK, but each int8 elementwise
op on a full feature map costs a requantising pass over it. The 1/6 of hard-swish is therefore not
a Mul of its own: it is folded into the weights of the linear ops that consume the activation
(the next conv, the squeeze-excite mean -> conv, the classifier), so a hard-swish costs two int8
ops — Add+ReLU6 (fused by the converter) and Mul — instead of three (and a squeeze-excite gate's
alpha goes the same way). Where a consumer is not linear
(a residual Add, a graph output) the Mul by 1/6 stays. Each rewrite keeps the float function; only
summation order changes.
"""

from __future__ import annotations

from typing import Any

# ops through which a scale factor passes unchanged: f(c*x) = c*f(x) for c > 0
_HOMOGENEOUS = {"ReduceMean", "GlobalAveragePool", "AveragePool", "MaxPool", "GlobalMaxPool", "Flatten",
                "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Relu"}
# linear ops whose second input is a weight that can carry a scale factor
_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


class _Graph:
    """Consumers and initializers of an ONNX graph, for the rewrites below."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.uses: dict[str, int] = {}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
                self.consumers.setdefault(i, []).append(n)

    def owned_weight(self, name: str) -> bool:
        """An initializer only this node reads (scaling it changes nothing else)."""
        return name in self.inits and self.uses.get(name, 0) == 1

    def absorb(self, tensor: str, factor: float, plan: dict[str, float], depth: int = 0) -> bool:
        """Plan (initializer name -> factor) how every consumer of ``tensor`` takes it scaled by
        1/factor; False if one cannot."""
        if tensor in self.outputs or depth > 8 or not self.consumers.get(tensor):
            return False
        for n in self.consumers[tensor]:
            op = n.op_type
            if op in _WEIGHTED and n.input[0] == tensor and self.owned_weight(n.input[1]):
                plan[n.input[1]] = plan.get(n.input[1], 1.0) * factor
            elif (op in _HOMOGENEOUS and n.input[0] == tensor) or (op == "Mul" and list(n.input).count(tensor) == 1):
                if not self.absorb(n.output[0], factor, plan, depth + 1):
                    return False
            else:
                return False
        return True

    def apply(self, plan: dict[str, float]) -> None:
        from onnx import numpy_helper

        for name, factor in plan.items():
            t = self.inits[name]
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * factor, name))


def rewrite_hard_activations(onnx_model: Any, ops: tuple[str, ...] = ("HardSwish", "HardSigmoid"),
                             fold_scale: bool = True) -> dict[str, int]:
    """Replace HardSwish / HardSigmoid with Add, Clip and Mul (module docstring); with
    ``fold_scale`` the hard-swish 1/6 and the hard-sigmoid alpha go into the consumers' weights
    where they can.
    Returns how many of each were rewritten and how many 1/6 factors were folded."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = onnx_model.graph
    g = _Graph(graph)
    consts: dict[float, str] = {}
    new_inits: list[Any] = []

    def const(v: float) -> str:
        key = float(np.float32(v))
        if key not in consts:
            consts[key] = f"edge_const_{len(consts)}"
            new_inits.append(numpy_helper.from_array(np.array(v, np.float32), consts[key]))
        return consts[key]

    nodes: list[Any] = []
    counts = {"HardSwish": 0, "HardSigmoid": 0, "HardSwishScaleFolded": 0, "HardSigmoidScaleFolded": 0}
    for n in graph.node:
        base = n.name or n.output[0]
        if n.op_type == "HardSwish" and "HardSwish" in ops:
            x, out = n.input[0], n.output[0]
            shift = [helper.make_node("Add", [x, const(3.0)], [base + "/shift"], name=base + "/shift"),
                     helper.make_node("Clip", [base + "/shift", const(0.0), const(6.0)], [base + "/relu6"],
                                      name=base + "/relu6")]
            plan: dict[str, float] = {}
            if fold_scale and g.absorb(out, 1 / 6, plan):
                # out := x * relu6(x + 3) is 6 x hard-swish; its consumers' weights carry the 1/6
                g.apply(plan)
                nodes += shift + [helper.make_node("Mul", [x, base + "/relu6"], [out], name=base + "/mul")]
                counts["HardSwishScaleFolded"] += 1
            else:
                # x is scaled first: (x/6) * relu6(x + 3) is a form the converter does not fuse back
                nodes += shift + [
                    helper.make_node("Mul", [x, const(1 / 6)], [base + "/x6"], name=base + "/x6"),
                    helper.make_node("Mul", [base + "/x6", base + "/relu6"], [out], name=base + "/mul")]
        elif n.op_type == "HardSigmoid" and "HardSigmoid" in ops:
            attrs = {a.name: a.f for a in n.attribute}
            alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
            shift = helper.make_node("Add", [n.input[0], const(beta / alpha)], [base + "/shift"], name=base + "/shift")
            plan = {}
            if fold_scale and g.absorb(n.output[0], alpha, plan):
                # the gate := clip(x + beta/alpha, 0, 1/alpha) is 1/alpha x hard-sigmoid; the consumers carry alpha
                g.apply(plan)
                nodes += [shift, helper.make_node("Clip", [base + "/shift", const(0.0), const(1 / alpha)],
                                                  [n.output[0]], name=base + "/relu6")]
                counts["HardSigmoidScaleFolded"] += 1
            else:
                nodes += [shift,
                          helper.make_node("Clip", [base + "/shift", const(0.0), const(1 / alpha)], [base + "/relu6"],
                                           name=base + "/relu6"),
                          helper.make_node("Mul", [base + "/relu6", const(alpha)], [n.output[0]], name=base + "/scale")]
        else:
            nodes.append(n)
            continue
        counts[n.op_type] += 1
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    return counts


def zero_pad_max_pools(onnx_model: Any) -> int:
    """Give a padded MaxPool over a non-negative input (after Relu or Clip(0, …)) an explicit
    zero Pad in front; return how many. Exact: every window holds a real value ≥ 0, so a padded 0
    never wins. Why: onnx2tf pads with the lowest float (PADV2), which XNNPACK does not take in
    float and which, calibrated, sets that tensor's int8 scale to ~1e36 (every value quantizes to 0);
    a zero PAD is delegated and calibrates like its input."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = onnx_model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}

    def non_negative(tensor: str) -> bool:
        n = producer.get(tensor)
        if n is None:
            return False
        if n.op_type == "Relu":
            return True
        if n.op_type == "Clip" and len(n.input) > 1 and n.input[1] in inits:
            return bool(numpy_helper.to_array(inits[n.input[1]]).min() >= 0)
        return n.op_type == "MaxPool" and non_negative(n.input[0])

    nodes: list[Any] = []
    done = 0
    for n in graph.node:
        attrs = {a.name: a for a in n.attribute}
        pads = list(attrs["pads"].ints) if "pads" in attrs else []
        plain = (attrs["auto_pad"].s in (b"", b"NOTSET") if "auto_pad" in attrs else True) and \
            not (attrs["ceil_mode"].i if "ceil_mode" in attrs else 0)
        if n.op_type != "MaxPool" or not any(pads) or not plain or not non_negative(n.input[0]):
            nodes.append(n)
            continue
        base, k = n.name or n.output[0], len(pads) // 2
        pad_name = f"{base}/zero_pads"
        graph.initializer.append(numpy_helper.from_array(
            np.array([0, 0, *pads[:k], 0, 0, *pads[k:]], np.int64), pad_name))
        nodes.append(helper.make_node("Pad", [n.input[0], pad_name], [f"{base}/padded"], name=f"{base}/pad",
                                      mode="constant"))
        n.input[0] = f"{base}/padded"
        del attrs["pads"].ints[:]
        attrs["pads"].ints.extend([0] * len(pads))
        nodes.append(n)
        done += 1
    if done:
        del graph.node[:]
        graph.node.extend(nodes)
    return done


def _static_shapes(onnx_model: Any) -> dict[str, list[int]]:
    """Each tensor's inferred shape (0 where a dim is unknown), graph inputs included."""
    from onnx import shape_inference

    values = [*shape_inference.infer_shapes(onnx_model).graph.value_info, *onnx_model.graph.input]
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def _constant_pad(node: Any) -> bool:
    """A Pad node in "constant" mode (ONNX's default)."""
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    return node.op_type == "Pad" and mode == "constant"


def fold_constants(onnx_model: Any) -> tuple[Any, int]:
    """The model with every subgraph that depends on no input computed once and stored as an
    initializer (onnx-graphsurgeon's folding, evaluated by onnxruntime), and how many nodes went.
    Exact. Why: onnx2tf builds a TensorFlow op for each node it is given; a ``Constant`` node that
    feeds ReduceMean's axes (an input from opset 18) became a run-time ``tf.Mean`` the TFLite
    converter refuses (RepViT), and EdgeNeXt's positional encoding, a function of the input size
    only, broke onnx2tf's shape checks. Input sizes are static, so what reads only a shape folds."""
    from onnx import shape_inference

    from edge._deps import require

    gs = require("onnx_graphsurgeon", "exporting to TFLite")
    before = len(onnx_model.graph.node)
    # with every tensor's static shape known, a Shape node folds too (graphsurgeon's fold_shapes):
    # TF-ported models compute their "same" pads from Shape at run time, each Pad's output shape
    # known only once the pads before it are folded, so fold again while a round folds something
    folded, count = onnx_model, before
    for _ in range(16):
        graph = gs.import_onnx(shape_inference.infer_shapes(folded))
        graph.fold_constants().cleanup()
        folded = gs.export_onnx(graph)
        if len(folded.graph.node) == count:
            break
        count = len(folded.graph.node)
    del folded.opset_import[:]  # (graphsurgeon writes its own default)
    folded.opset_import.extend(onnx_model.opset_import)
    return folded, before - len(folded.graph.node)


def conv_unit_pools(onnx_model: Any) -> int:
    """Rewrite every 1×1 AveragePool/MaxPool with a stride > 1 (EfficientFormerV2's query
    subsampling) as a depthwise 1×1 Conv of weight 1 with that stride; return how many. Exact: each
    window holds one value. Why: LiteRT's XNNPACK delegate takes no 1×1 pooling with a non-unit
    stride, and leaves it to TFLite's kernels, between two partitions; the conv it takes."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = onnx_model.graph
    shapes = _static_shapes(onnx_model)
    done = 0
    for n in graph.node:
        attrs = {a.name: a for a in n.attribute}
        kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else []
        strides = list(attrs["strides"].ints) if "strides" in attrs else []
        pads = list(attrs["pads"].ints) if "pads" in attrs else []
        shape = shapes.get(n.input[0], [])
        if (n.op_type not in ("AveragePool", "MaxPool") or len(n.output) != 1 or not kernel
                or any(k != 1 for k in kernel) or not any(s > 1 for s in strides) or any(pads)
                or len(shape) != 4 or shape[1] < 1):
            continue
        channels = shape[1]
        weight = f"{n.name or n.output[0]}/unit_weight"
        graph.initializer.append(numpy_helper.from_array(np.ones((channels, 1, 1, 1), np.float32), weight))
        conv = helper.make_node("Conv", [n.input[0], weight], list(n.output), name=f"{n.name}/as_conv",
                                group=channels, kernel_shape=[1, 1], strides=strides)
        n.CopyFrom(conv)
        done += 1
    return done


def conv_absorbed_pads(onnx_model: Any) -> int:
    """Fold every zero Pad over H and W that only a Conv reads into that Conv's own ``pads``; return
    how many. Exact. Why: TF-ported models (timm's ``tf_`` families) pad "same" asymmetrically with
    an explicit Pad, whose NCHW pad list onnx2tf applied to the wrong NHWC axes (the Keras graph then
    failed: "Depth of input (17) is not a multiple of input depth of filter (16)"); a Conv's
    asymmetric pads it converts right."""
    from onnx import helper, numpy_helper

    graph = onnx_model.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    outputs = {o.name for o in graph.output}
    done, dead = 0, []
    for n in graph.node:
        users = readers.get(n.output[0], []) if n.op_type == "Pad" else []
        if (not _constant_pad(n) or len(n.input) < 2 or n.input[1] not in inits
                or n.output[0] in outputs or not users or any(u.op_type != "Conv" or u.input[0] != n.output[0]
                                                               for u in users)):
            continue
        if len(n.input) > 2 and n.input[2] and (n.input[2] not in inits
                                                 or numpy_helper.to_array(inits[n.input[2]]).any()):
            continue  # a non-zero pad value
        if len(n.input) > 3 and n.input[3]:
            continue  # padded axes given explicitly
        pads = [int(p) for p in numpy_helper.to_array(inits[n.input[1]])]
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or any(p < 0 for p in pads):
            continue  # batch or channel padded, or a crop
        extra = [pads[2], pads[3], pads[6], pads[7]]  # ONNX Conv pads: [h_begin, w_begin, h_end, w_end]
        if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for u in users for a in u.attribute):
            continue
        for u in users:
            own = next((a for a in u.attribute if a.name == "pads"), None)
            if own is None:
                u.attribute.append(helper.make_attribute("pads", extra))
            else:
                merged = [int(a) + b for a, b in zip(own.ints, extra, strict=True)]
                del own.ints[:]
                own.ints.extend(merged)
            u.input[0] = n.input[0]
        dead.append(n)
        done += 1
    for n in dead:
        graph.node.remove(n)
    return done


def unit_stride_slices(onnx_model: Any) -> int:
    """Rewrite every Slice that takes every s-th element of a whole axis (LeViT's ``x[:, ::2, ::2]``
    query subsampling; s divides the axis) as Reshape (the axis split into (D/s, s)) → a unit-step
    Slice of the first of each s → Reshape; return how many. Exact. Why: LiteRT's XNNPACK delegate
    takes no STRIDED_SLICE with a step, and leaves it to TFLite's kernels between two partitions."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = onnx_model.graph
    shapes = _static_shapes(onnx_model)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    done = 0
    for n in list(graph.node):
        if n.op_type != "Slice" or len(n.input) < 5 or any(i not in inits for i in n.input[1:5]):
            continue
        starts, ends, axes, steps = (inits[i].reshape(-1).tolist() for i in n.input[1:5])
        shape = shapes.get(n.input[0], [])
        if len(axes) != 1 or not shape or not all(shape):
            continue
        axis, step = axes[0] % len(shape), steps[0]
        dim = shape[axis]
        if step <= 1 or starts[0] != 0 or ends[0] < dim or dim % step:
            continue
        name = n.name or n.output[0]
        split = [*shape[:axis], dim // step, step, *shape[axis + 1:]]
        out = [*shape[:axis], dim // step, *shape[axis + 1:]]
        consts = {"split": np.array(split, np.int64), "out": np.array(out, np.int64), "zero": np.array([0], np.int64),
                  "one": np.array([1], np.int64), "axis": np.array([axis + 1], np.int64)}
        for key, value in consts.items():
            graph.initializer.append(numpy_helper.from_array(value, f"{name}/{key}"))
        at = list(graph.node).index(n)
        nodes = [helper.make_node("Reshape", [n.input[0], f"{name}/split"], [f"{name}/split_out"],
                                  name=f"{name}/split"),
                 helper.make_node("Slice", [f"{name}/split_out", f"{name}/zero", f"{name}/one", f"{name}/axis"],
                                  [f"{name}/first"], name=f"{name}/first"),
                 helper.make_node("Reshape", [f"{name}/first", f"{name}/out"], list(n.output), name=f"{name}/merge")]
        graph.node.remove(n)
        for k, node in enumerate(nodes):
            graph.node.insert(at + k, node)
        done += 1
    return done


def concat_constant_pads(onnx_model: Any) -> int:
    """Rewrite every Pad with a non-zero constant along one axis (EfficientViT's linear attention
    pads v with ones) as a Concat of constant blocks around the input; return how many. Exact.
    Why: LiteRT's XNNPACK delegate takes zero padding only; its PADV2 ran in TFLite's kernels."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = onnx_model.graph
    shapes = _static_shapes(onnx_model)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    done = 0
    for n in list(graph.node):
        if (not _constant_pad(n) or len(n.input) < 3 or not n.input[2]
                or n.input[1] not in inits or n.input[2] not in inits or (len(n.input) > 3 and n.input[3])):
            continue
        value, pads, shape = inits[n.input[2]], inits[n.input[1]].reshape(-1).tolist(), shapes.get(n.input[0], [])
        rank = len(pads) // 2
        padded = [a for a in range(rank) if pads[a] or pads[a + rank]]
        if not value.any() or len(shape) != rank or not all(shape) or len(padded) != 1 or min(pads) < 0:
            continue
        axis, name = padded[0], n.name or n.output[0]
        parts = [n.input[0]]
        for side, width in (("begin", pads[axis]), ("end", pads[axis + rank])):
            if width:
                block = [*shape[:axis], width, *shape[axis + 1:]]
                graph.initializer.append(numpy_helper.from_array(
                    np.full(block, value.reshape(-1)[0], dtype=value.dtype), f"{name}/{side}"))
                parts = [f"{name}/{side}", *parts] if side == "begin" else [*parts, f"{name}/{side}"]
        at = list(graph.node).index(n)
        graph.node.remove(n)
        graph.node.insert(at, helper.make_node("Concat", parts, list(n.output), name=f"{name}/as_concat", axis=axis))
        done += 1
    return done
