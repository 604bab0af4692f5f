"""Target quantizers by name. A target's exporter names the quantizer it needs; adding a target's
quantizer is one function registered here."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
from collections.abc import Callable, Iterator
from typing import Any

from edge._deps import require
from edge.errors import EdgeError
from quantize.config import PTQConfig

QuantizerFactory = Callable[[PTQConfig, bool], Any]
_FACTORIES: dict[str, QuantizerFactory] = {}


def register_quantizer(name: str) -> Callable[[QuantizerFactory], QuantizerFactory]:
    def deco(fn: QuantizerFactory) -> QuantizerFactory:
        _FACTORIES[name] = fn
        return fn

    return deco


def make_quantizer(name: str, config: PTQConfig, is_qat: bool = False) -> Any:
    if name not in _FACTORIES:
        raise EdgeError(f"unknown quantizer {name!r} (known: {', '.join(sorted(_FACTORIES))})")
    return _FACTORIES[name](config, is_qat)


def activation_observer(config: PTQConfig) -> Any:
    """The observer constructor the config asks for (eps as XNNPACK's own configs use)."""
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver

    from quantize.observers import PercentileObserver

    if config.observer == "minmax":
        return MinMaxObserver.with_args(eps=2**-12)
    if config.observer in ("percentile", "search"):  # search starts from the percentile ranges
        return PercentileObserver.with_args(percentile=config.percentile, eps=2**-12)
    return HistogramObserver.with_args(eps=2**-12)


def keep_float_filter(patterns: tuple[str, ...]) -> Callable[[Any], bool] | None:
    """A node filter that is False for nodes inside any module whose path matches a pattern."""
    if not patterns:
        return None

    def quantize_node(node: Any) -> bool:
        stack = node.meta.get("nn_module_stack") or {}
        for path, _type in stack.values():
            if any(fnmatch.fnmatchcase(path, p) for p in patterns):
                return False
        return True

    return quantize_node


# Ops XNNPACK runs in int8 but ExecuTorch's XNNPACK quantizer leaves unannotated. Left float, each
# costs a dequantize + quantize pair around a full feature map (fbnetv3_b: 77 hard-swish, 18
# squeeze-excite means), which is why the stock int8 .pte is barely faster than fp32.
_EXTRA_INT8_OPS = ("hardswish", "mean")


def _annotate_extra_int8_ops(gm: Any, qconfig: Any, node_filter: Callable[[Any], bool] | None) -> None:
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    key = "quantization_annotation"
    targets = {
        torch.ops.aten.hardswish.default,
        torch.ops.aten.hardswish_.default,
        torch.ops.aten.mean.dim,
    }
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in targets:
            continue
        if key in node.meta and node.meta[key]._annotated:
            continue
        if node_filter is not None and not node_filter(node):
            continue
        if node.target == torch.ops.aten.mean.dim and list(node.args[1]) not in ([2, 3], [-2, -1], [3, 2]):
            continue  # XNNPACK's int8 mean is a global average pool over H, W only
        src = node.args[0]
        node.meta[key] = QuantizationAnnotation(
            input_qspec_map={src: qconfig.input_activation},
            output_qspec=qconfig.output_activation,
            _annotated=True,
        )


def _edge_xnnpack_quantizer_class() -> Any:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class EdgeXNNPACKQuantizer(XNNPACKQuantizer):  # type: ignore[misc]
        """XNNPACK's quantizer plus int8 annotations for hard-swish and spatial mean."""

        def annotate(self, model: Any) -> Any:
            model = super().annotate(model)
            if self.global_config is not None:
                _annotate_extra_int8_ops(model, self.global_config, self.filter_fn)
            _unannotate_constants(model)
            return model

    return EdgeXNNPACKQuantizer


def _not_depthwise(node: Any) -> bool:
    """False for a grouped conv: XNNPACK has no dynamically quantized depthwise conv (it stays float)."""
    import torch

    if node.op == "call_function" and node.target in (torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default):
        return (node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)) == 1
    return True


def _unannotate_constants(gm: Any) -> None:
    """Drop the annotations of ops no graph input reaches (see input_dependent): some annotators
    (cat, and the ops sharing its parameters) do not consult the node filter."""
    reached = input_dependent()
    for node in gm.graph.nodes:
        if node.op == "call_function" and "quantization_annotation" in node.meta and not reached(node):
            del node.meta["quantization_annotation"]


def _both(a: Callable[[Any], bool], b: Callable[[Any], bool] | None) -> Callable[[Any], bool]:
    return a if b is None else (lambda node: a(node) and b(node))


def _is_tensor(node: Any) -> bool:
    import torch

    val = node.meta.get("val")
    return val is None or isinstance(val, torch.Tensor | tuple | list)


def input_dependent() -> Callable[[Any], bool]:
    """A node filter, False for nodes no graph input's data reaches (its size may: the batch is
    dynamic while calibrating). A tensor built from the input size alone (EdgeNeXt's positional
    encoding: a grid, cumsum, sin, a conv) is a constant: quantized, its q/dq pairs would keep the
    exporter from folding it into one; float, it folds."""
    memo: dict[Any, bool] = {}  # one quantizer's graph, filled as the annotators ask

    def reached(node: Any) -> bool:
        todo = [node]
        while todo:
            n = todo[-1]
            if n in memo:
                todo.pop()
                continue
            if n.op == "placeholder" or not _is_tensor(n):  # a size read from the input is no data
                memo[n] = n.op == "placeholder"
                todo.pop()
                continue
            pending = [a for a in n.all_input_nodes if a not in memo]
            if pending:
                todo.extend(pending)
                continue
            memo[n] = any(memo[a] for a in n.all_input_nodes)
            todo.pop()
        return memo[node]

    def quantize_node(node: Any) -> bool:  # a weight or another constant is judged by its op
        return node.op != "call_function" or reached(node)

    return quantize_node


@register_quantizer("xnnpack")
def xnnpack_quantizer(config: PTQConfig, is_qat: bool) -> Any:
    """ExecuTorch's XNNPACK quantizer: symmetric int8, per-channel weights, observers from config,
    plus int8 hard-swish and mean (see _EXTRA_INT8_OPS). With dynamic activations: int8 weights,
    each conv/linear input quantized at run time over the image at hand (XNNPACK's qd8 kernels),
    depthwise convs and element-wise ops float."""
    xq = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "int8 quantization for XNNPACK")
    if config.activations == "dynamic":
        if is_qat:
            raise EdgeError("QAT trains static activation ranges: --activations dynamic is a PTQ recipe")
        dyn = xq.get_symmetric_quantization_config(is_per_channel=config.per_channel, is_dynamic=True)
        quantizer = xq.XNNPACKQuantizer().set_global(dyn)
        quantizer.set_filter_function(_both(_both(_not_depthwise, input_dependent()),
                                            keep_float_filter(config.keep_float)))
        return quantizer
    qconfig = xq.get_symmetric_quantization_config(is_per_channel=config.per_channel, is_qat=is_qat)
    if not is_qat:
        act = dataclasses.replace(qconfig.input_activation, observer_or_fake_quant_ctr=activation_observer(config))
        qconfig = dataclasses.replace(qconfig, input_activation=act, output_activation=act)
    quantizer = _edge_xnnpack_quantizer_class()().set_global(qconfig)
    quantizer.set_filter_function(_both(input_dependent(), keep_float_filter(config.keep_float)))
    return quantizer


def _edge_coreml_quantizer_class() -> Any:
    from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

    class EdgeCoreMLQuantizer(CoreMLQuantizer):  # type: ignore[misc]
        """Core ML's quantizer with our keep-float node filter applied to its global config."""

        def __init__(self, config: Any, node_filter: Callable[[Any], bool] | None, activation_ctr: Any) -> None:
            super().__init__(config)
            self.node_filter = node_filter
            self.activation_ctr = activation_ctr

        def annotate(self, model: Any) -> Any:
            with _cached_coreml_patterns():
                self._annotate_all_patterns(model, self._config.global_config, self.node_filter)
            _unannotate_constants(model)
            if self.activation_ctr is not None:
                _replace_activation_observers(model, self.activation_ctr)
            return model

    return EdgeCoreMLQuantizer


_PATTERN_BUILDERS = ("get_conv_pattern", "get_conv_bn_pattern", "get_linear_pattern", "get_linear_bn_pattern",
                     "get_binary_op_act_pattern")
_PATTERN_MEMO: dict[Any, Any] = {}


def _trace_pattern(pattern: Any, example_inputs: tuple[Any, ...], is_cuda: bool = False) -> Any:
    """Core ML's pattern tracer, non-strict (torch.export without dynamo): 4x faster, and on
    fbnetv3_b the prepared graph is identical, node for node, to the strict tracer's."""
    import torch

    gm = torch.export.export(pattern, example_inputs, strict=False).module()
    for node in list(gm.graph.nodes):  # ep.module() adds copy_ nodes for mutated inputs
        if node.op == "call_function" and node.target == torch.ops.aten.copy_.default and not node.users:
            gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


@contextlib.contextmanager
def _cached_coreml_patterns() -> Iterator[None]:
    """Trace each of Core ML's match patterns once per process, and faster.

    Why: CoreMLQuantizer traces its small pattern graphs (405 of them for fbnetv3_b) with strict
    torch.export on every annotation: 84-128 s per int8 export here. The matcher rewrites a
    pattern's output node, so every caller gets its own deep copy of the memoised graph.
    """
    import executorch.backends.apple.coreml.quantizer._coreml_quantizer_utils as utils

    originals = {name: getattr(utils, name) for name in (*_PATTERN_BUILDERS, "_get_aten_graph_module")}

    def memoised(name: str, build: Callable[..., Any]) -> Callable[..., Any]:
        def get(*args: Any, **kwargs: Any) -> Any:
            key = (name, args, tuple(sorted(kwargs.items())))
            if key not in _PATTERN_MEMO:
                _PATTERN_MEMO[key] = build(*args, **kwargs)
            return copy.deepcopy(_PATTERN_MEMO[key])

        return get

    try:
        for name in _PATTERN_BUILDERS:
            setattr(utils, name, memoised(name, originals[name]))
        utils._get_aten_graph_module = _trace_pattern
        yield
    finally:
        for name, fn in originals.items():
            setattr(utils, name, fn)


def _replace_activation_observers(gm: Any, ctr: Any) -> None:
    """Swap the observer of every per-tensor (activation) spec a quantizer annotated; weights
    (per-channel) and derived bias specs keep theirs."""
    import torch
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    per_tensor = (torch.per_tensor_affine, torch.per_tensor_symmetric)

    def swap(spec: Any) -> Any:
        if isinstance(spec, QuantizationSpec) and spec.qscheme in per_tensor:
            return dataclasses.replace(spec, observer_or_fake_quant_ctr=ctr)
        return spec

    for node in gm.graph.nodes:
        ann = node.meta.get("quantization_annotation")
        if ann is None:
            continue
        ann.input_qspec_map = {k: (v if getattr(k, "op", None) == "get_attr" else swap(v))
                               for k, v in ann.input_qspec_map.items()}
        ann.output_qspec = swap(ann.output_qspec)


# Core ML's quantizer builds min/max observers; the others are swapped in after annotation.


@register_quantizer("coreml")
def coreml_quantizer(config: PTQConfig, is_qat: bool) -> Any:
    """coremltools' W8A8 scheme through ExecuTorch's CoreMLQuantizer: int8 symmetric weights
    (per channel when asked), uint8 activations, converted by coremltools to quantize/dequantize."""
    if config.activations == "dynamic":
        raise EdgeError("Core ML's W8A8 has static activation ranges only: for float activations with int8 "
                        "weights use --precision w8")
    require("executorch.backends.apple.coreml.quantizer", "int8 quantization for Core ML")
    require("coremltools", "int8 quantization for Core ML")
    import torch
    from coremltools.optimize.torch.quantization.quantization_config import LinearQuantizerConfig

    observer = "min_max"
    cfg = LinearQuantizerConfig.from_dict({"global_config": {
        "quantization_scheme": "symmetric",
        "activation_dtype": torch.quint8,
        "weight_dtype": torch.qint8,
        "weight_per_channel": config.per_channel,
        "activation_observer": "moving_average_min_max" if is_qat else observer,
        "weight_observer": "moving_average_min_max" if is_qat else observer,
        "milestones": [0, 0, 10 ** 9, 10 ** 9] if is_qat else None,
    }})
    swap = None if is_qat or config.observer in (None, "minmax") else activation_observer(config)
    return _edge_coreml_quantizer_class()(cfg, _both(input_dependent(), keep_float_filter(config.keep_float)), swap)
