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
    int8. Unlike its default, ``full`` is folded too, so a grid built from the input size alone
    (EdgeNeXt's positional encoding: full, cumsum, sin, a conv) becomes one constant instead of ops
    outside the delegate. ExecuTorch skips ``full`` because a large one grows the file by its size;
    the manifest's size shows it, and ops outside the delegate would cost every inference instead.
    """
    from executorch.exir.pass_base import ExportedProgramPassBase, ExportedProgramPassResult
    from executorch.exir.pass_manager import ExportedProgramPassManager
    from executorch.exir.passes.constant_prop_pass import _QUANT_PRIMITIVES_EDGE, constant_prop_pass

    class FoldConstants(ExportedProgramPassBase):  # type: ignore[misc]
        def call(self, exported_program: Any) -> Any:
            skip = set(_QUANT_PRIMITIVES_EDGE)  # the default's, less aten.full
            return ExportedProgramPassResult(constant_prop_pass(exported_program, custom_skip_targets=skip), True)

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


def _per_row_fake_quant(x: Any) -> Any:
    """int8 asymmetric fake-quant with one range per row of the GEMM XNNPACK runs: each pixel's
    channels for a conv input (NCHW: dim 1), each token's features for a linear input (last dim)."""
    import torch

    dim = 1 if x.dim() == 4 else -1
    lo = x.amin(dim=dim, keepdim=True).clamp(max=0)
    hi = x.amax(dim=dim, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / 255.0).clamp(min=2**-12)
    zp = torch.clamp(torch.round(-128 - lo / scale), -128, 127)
    return (torch.clamp(torch.round(x / scale) + zp, -128, 127) - zp) * scale


def xnnpack_dynamic_simulation(program: Any) -> Any:
    """A dynamically quantized PT2E program with each choose_qparams → quantize → dequantize chain
    replaced by XNNPACK's own rule (one range per row, _per_row_fake_quant). Why: PT2E measures one
    range over the whole tensor (over the whole batch, in PyTorch), XNNPACK's qd8 kernels one per
    row, so the artifact is finer than the program it was lowered from."""
    import copy

    import torch

    sim = copy.deepcopy(program)
    graph = sim.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target != torch.ops.quantized_decomposed.choose_qparams.tensor:
            continue
        x = node.args[0]
        quants = [u for u in x.users if u.target == torch.ops.quantized_decomposed.quantize_per_tensor.tensor]
        for q in quants:
            for dq in [u for u in q.users if u.target == torch.ops.quantized_decomposed.dequantize_per_tensor.tensor]:
                with graph.inserting_after(dq):
                    fq = graph.call_function(_per_row_fake_quant, (x,))
                dq.replace_all_uses_with(fq)
    graph.eliminate_dead_code()
    sim.recompile()
    sim.meta.pop("per_image", None)  # rows do not depend on the batch
    return sim


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

    def simulation(self, request: ExportRequest, program: Any) -> Any:
        """Dynamic int8: the program as XNNPACK computes it (one range per row, not per tensor)."""
        meta = getattr(program, "meta", None)
        if isinstance(meta, dict) and meta.get("per_image"):
            return xnnpack_dynamic_simulation(program)
        return program

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
