"""Core ML `.mlpackage` (ML Program) in fp16, fp32, weight-only int8 (w8) or W8A8 (int8).

coremltools converts on any OS, but Core ML predictions run only on macOS: on other hosts the
artifact is checked by reading its saved spec (edge.coreml_spec) and its accuracy is simulated
on the exact PyTorch program that was converted — labelled so, never passed off as measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge._deps import require
from edge.errors import EdgeError, first_line
from edge.models import LoadedModel
from edge.runtimes.coreml import COMPUTE_UNITS
from exporters import register
from exporters.base import Converted, Exporter, ExportRequest, Option
from quantize import PTQConfig

DEPLOYMENT_TARGETS = ("iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15")
# Activation quantization (quantize/dequantize ops in an ML Program) arrived with iOS17/macOS14.
_W8A8_TARGETS = ("iOS17", "iOS18", "macOS14", "macOS15")


class _Normalize:
    """Wraps a module so an ImageType input (pixels scaled to [0, 1] by Core ML) is normalised
    exactly with per-channel mean/std. Core ML's own image scale is one scalar for all channels,
    so folding a per-channel std into it would be approximate."""

    @staticmethod
    def wrap(module: Any, mean: list[float], std: list[float]) -> Any:
        import torch

        class Normalize(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = module
                self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
                self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

            def forward(self, x: Any) -> Any:
                return self.inner((x - self.mean) / self.std)

        return Normalize().eval()


@register
class CoreMLExporter(Exporter):
    name = "coreml"
    title = "Core ML"
    requires = ("coremltools",)
    suffix = ".mlpackage"
    precisions = ("fp16", "fp32", "w8", "int8")
    quantizer = "coreml"
    qat_quantizer = "coreml"
    runtime = "coreml"
    build_cost = {"fp32": 1.0, "int8": 4.0}  # relative, for the report's work queue
    # percentile rather than Core ML's own min/max ranges: outliers would set the scale (README: the figures)
    default_observer = "percentile"
    versions = ("torch", "coremltools", "executorch", "timm")
    options = (
        Option("deployment_target", "iOS17", DEPLOYMENT_TARGETS,
               "minimum OS the package runs on (int8/W8A8 needs iOS17 or macOS14 or newer)"),
        Option("input_type", "tensor", ("tensor", "image"),
               "tensor: normalised NCHW float, as other targets; image: an RGB image, mean/std applied inside"),
    )
    runtime_options = (
        Option("compute_units", "ALL", COMPUTE_UNITS, "Core ML compute units for the parity run on macOS"),
    )

    def validate(self, precision: str, quant: PTQConfig | None) -> None:
        if quant is not None and quant.activations != "static":
            raise EdgeError("Core ML's W8A8 has static activation ranges only: for float activations with int8 "
                            "weights use --precision w8")
        target = self.opts["deployment_target"]
        if precision == "int8" and target not in _W8A8_TARGETS:
            raise EdgeError(f"Core ML int8 (W8A8) needs --deployment-target iOS17/macOS14 or newer; "
                            f"{target} has no activation quantization (use --precision w8 for {target})")

    def simulation(self, request: ExportRequest, program: Any) -> Any:
        """w8: the float module with its conv/linear weights rounded as coremltools rounds them."""
        return weight_only_int8(program) if request.recipe.precision == "w8" else program

    def convert(self, request: ExportRequest, program: Any, dest: Path) -> Converted:
        ct = require("coremltools", "exporting to Core ML")
        import numpy as np
        import torch

        model, precision = request.model, request.recipe.precision
        pre = model.preprocessing()
        image_input = self.opts["input_type"] == "image"
        module = _Normalize.wrap(program, pre["mean"], pre["std"]) if image_input else program
        example = model.example_input(1)
        if image_input:
            example = example.clamp(0, 1)
        with torch.no_grad():
            ep = torch.export.export(module, (example,), strict=False).run_decompositions({})
        _drop_aliases(ep)
        shape = tuple(model.input_shape)
        inp = (ct.ImageType(name="image", shape=shape, scale=1 / 255.0, color_layout=ct.colorlayout.RGB)
               if image_input else ct.TensorType(name="image", shape=shape, dtype=np.float32))
        classifier = model.spec.mode == "classifier"
        labels = model.labels or [str(i) for i in range(model.num_classes or 0)]
        kwargs: dict[str, Any] = {}
        if classifier:
            kwargs["classifier_config"] = ct.ClassifierConfig(labels)
        else:
            kwargs["outputs"] = [ct.TensorType(name=n) for n in model.output_names]
        fp16 = precision in ("fp16", "w8", "int8")
        try:
            mlmodel = ct.convert(
                ep,
                convert_to="mlprogram",
                inputs=[inp],
                minimum_deployment_target=getattr(ct.target, self.opts["deployment_target"]),
                compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
                skip_model_load=True,  # loading compiles the model, which needs macOS
                **kwargs,
            )
        except (NotImplementedError, ValueError, RuntimeError, TypeError) as exc:
            raise EdgeError(f"coremltools could not convert {model.spec.name}: {first_line(exc)}") from exc
        if precision == "w8":
            mlmodel = _quantize_weights(ct, mlmodel)
        _describe(mlmodel, model, precision, image_input)
        mlmodel.save(str(dest))
        from edge.coreml_spec import inspect_mlpackage

        spec = inspect_mlpackage(dest)
        outputs = [{"name": o["name"], "shape": o["shape"], "dtype": o["dtype"]} for o in spec["outputs"]]
        io = {
            "inputs": [{"name": "image", "shape": list(shape), "layout": "NCHW",
                        "dtype": "image:RGB" if image_input else "float32",
                        **({"pixel_scale": 1 / 255.0} if image_input else {})}],
            "outputs": outputs,
            "logits": "classLabel_probs" if classifier else None,
        }
        return Converted(io=io, extra={"compute_precision": "float16" if fp16 else "float32", "spec": spec})


def _drop_aliases(ep: Any) -> int:
    """Remove ``aten.alias`` nodes (in place; returns how many): coremltools 9.0 has no converter for
    that no-op, which decompositions leave where a slice takes a whole dim (GhostNetV2's
    ``x[:, :out_chs]``). An alias that is itself a graph output stays, so the signature holds."""
    import torch

    done = 0
    for node in list(ep.graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.alias.default \
                and not any(u.op == "output" for u in node.users):
            node.replace_all_uses_with(node.args[0])
            ep.graph.erase_node(node)
            done += 1
    if done:
        ep.graph_module.recompile()
    return done


def weight_only_int8(module: Any) -> Any:
    """A copy of ``module`` with every conv/linear weight rounded to symmetric per-output-channel
    int8 (scale = max|w| / 127), the rounding linear_symmetric weight quantization applies."""
    import copy

    import torch

    sim = copy.deepcopy(module).eval()
    with torch.no_grad():
        for mod in sim.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                w = mod.weight
                scale = (w.abs().flatten(1).amax(1).clamp_min(1e-12) / 127.0).view(-1, *[1] * (w.dim() - 1))
                w.copy_(torch.round(w / scale).clamp(-127, 127) * scale)
    return sim


def _quantize_weights(ct: Any, mlmodel: Any) -> Any:
    """Linear symmetric int8 weights, one scale per output channel, for every conv/linear."""
    from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

    op = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                 weight_threshold=0)
    return linear_quantize_weights(mlmodel, config=OptimizationConfig(global_config=op))


def _describe(mlmodel: Any, model: LoadedModel, precision: str, image_input: bool) -> None:
    """Metadata Xcode shows, plus what a device needs to feed the model (edge.* keys)."""
    import json

    import edge

    cfg = getattr(model.module, "pretrained_cfg", None) or {}
    mlmodel.author = "edge " + edge.__version__
    mlmodel.license = str(cfg.get("license", "see the model card"))
    mlmodel.short_description = f"{model.spec.name} ({model.spec.mode}, {precision})"
    mlmodel.version = edge.__version__
    meta = mlmodel.user_defined_metadata
    meta["edge.model"] = model.spec.name
    meta["edge.mode"] = model.spec.mode
    meta["edge.precision"] = precision
    meta["edge.weights_source"] = model.weights_source
    meta["edge.preprocessing"] = json.dumps(model.preprocessing())
    meta["edge.input"] = "image: RGB, mean/std applied inside" if image_input else "tensor: NCHW, normalised"
    if model.spec.mode == "classifier":
        meta["edge.scores"] = "classLabel_probs holds the logits; apply softmax for probabilities"

