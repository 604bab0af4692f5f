"""ExecuTorch `.pte` lowered to the XNNPACK delegate, in fp32 or PT2E int8."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edge.models import LoadedModel
from exporters import register
from exporters._xnnpack_rewrites import rewrite_for_xnnpack
from exporters.base import Converted, Exporter, ExportRequest


def _io_meta(model: LoadedModel, outputs: Any) -> dict[str, Any]:
    outs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {
        "inputs": [{"name": "image", "shape": list(model.input_shape), "layout": "NCHW", "dtype": "float32"}],
        "outputs": [
            {"name": n, "shape": list(o.shape), "dtype": "float32"}
            for n, o in zip(model.output_names, outs, strict=True)
        ],
    }


def delegation_counts(graph_module: Any) -> dict[str, Any]:
    """How many ops XNNPACK took and which were left to ExecuTorch's portable kernels."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    left: Counter[str] = Counter()
    for row in info.delegation_by_operator.values():
        if row.non_delegated:
            left[row.op_type] += row.non_delegated
    return {
        "delegated_ops": info.num_delegated_nodes,
        "non_delegated_ops": info.num_non_delegated_nodes,
        "delegated_subgraphs": info.num_delegated_subgraphs,
        "non_delegated_by_op": dict(sorted(left.items())),
    }


def fold_constants() -> Any:
    """A pass manager that folds input-independent ops into constants before partitioning.

    Decompositions leave scalar constants behind (hard-sigmoid's 3 and 6 become int64 tensors cast
    to float), and XNNPACK does not claim those casts: each would run on every inference outside
    the delegate. ExecuTorch's constant propagation skips quantize/dequantize, so int8 weights stay
    int8.
    """
    from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult
    from executorch.exir.pass_manager import ExportedProgramPassManager
    from executorch.exir.passes.constant_prop_pass import constant_prop_pass

    class FoldConstants(ExportedProgramPassBase):  # type: ignore[misc]
        def call(self, exported_program: Any) -> Any:
            return ExportedProgramPassResult(constant_prop_pass(exported_program), True)

    return ExportedProgramPassManager([FoldConstants()])


def xnnpack_partitioner() -> Any:
    """XNNPACK's partitioner, also taking int8 hard-swish.

    ExecuTorch's HardswishConfig claims fp32 only, so a quantized dq → hardswish → q chain stays
    two converts around a float op; XNNPACK itself runs hard-swish on int8 tensors (a lookup
    table), which the int8 parity tests check against the quantized PyTorch program.
    """
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import HardswishConfig
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class Int8HardswishConfig(HardswishConfig):  # type: ignore[misc]
        def supported_precision_types(self) -> list[Any]:
            return [ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT]

    configs = [Int8HardswishConfig if c is HardswishConfig else c for c in ALL_PARTITIONER_CONFIGS]
    return XnnpackPartitioner(configs=configs)


@register
class ExecuTorchExporter(Exporter):
    name = "executorch"
    title = "ExecuTorch"
    requires = ("executorch.exir",)
    suffix = ".pte"
    precisions = ("fp32", "int8")
    quantizer = "xnnpack"
    qat_quantizer = "xnnpack"
    runtime = "executorch"
    build_cost = {"fp32": 3.0, "int8": 6.0}  # relative, for the report's work queue
    # percentile: a few outliers would set the int8 scale of a min/max range (README: the figures)
    default_observer = "percentile"
    versions = ("torch", "executorch", "torchao", "timm")

    def convert(self, request: ExportRequest, program: Any, dest: Path) -> Converted:
        import torch
        from executorch.exir import to_edge_transform_and_lower

        model = request.model
        example = model.example_input(1)
        with torch.no_grad():
            program, ep = rewrite_for_xnnpack(program, lambda p: torch.export.export(p, (example,), strict=False))
            outputs = program(example)
        lowered = to_edge_transform_and_lower(ep, partitioner=[xnnpack_partitioner()],
                                              transform_passes=fold_constants())
        counts = delegation_counts(lowered.exported_program().graph_module)
        dest.write_bytes(lowered.to_executorch().buffer)
        return Converted(io=_io_meta(model, outputs), extra={"backend": "xnnpack", "delegation": counts})
