"""PT2E post-training quantization: export -> prepare (observers) -> calibrate -> convert."""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

from edge._deps import require
from edge.errors import EdgeError
from edge.progress import bar
from quantize.config import PTQConfig
from quantize.quantizers import make_quantizer


def export_for_quantization(module: Any, example: Any) -> Any:
    """torch.export with a dynamic batch, so calibration can run in batches."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    ex = example if example.shape[0] > 1 else example.repeat(2, 1, 1, 1)
    try:
        return torch.export.export(module, (ex,), dynamic_shapes=({0: batch},), strict=False)
    except (torch._dynamo.exc.UserError, RuntimeError):  # a model that specialises its batch
        return torch.export.export(module, (example[:1],), strict=False)


def calibrate(prepared: Any, images: Any, batch: int, desc: str | None = "calibrating") -> None:
    import torch

    static = _static_batch(prepared)
    step = 1 if static else batch
    with torch.no_grad(), bar(total=len(images), desc=desc, unit="img") as pbar:
        for i in range(0, len(images), step):
            prepared(images[i : i + step])
            pbar.update(min(step, len(images) - i))


def _static_batch(gm: Any) -> bool:
    for node in gm.graph.nodes:
        if node.op == "placeholder" and "val" in node.meta:
            return isinstance(node.meta["val"].shape[0], int)
    return False


def feature_modules(module: Any) -> list[str]:
    """The module paths of the model's feature stages, in order, as timm records them
    (``feature_info``: every timm model has it, and a ``features_only`` wrapper too)."""
    info = getattr(module, "feature_info", None)
    if info is None:
        return []
    if hasattr(info, "module_name"):  # timm's FeatureInfo (features_only models)
        return [str(m) for m in info.module_name()]
    return [str(i["module"]) for i in info if isinstance(i, dict) and i.get("module")]


def body_modules(module: Any) -> tuple[str, ...]:
    """Top-level children that hold the feature stages (``blocks``, ``layer1``..``layer4``, ``stages``)."""
    children = {n for n, _ in module.named_children()}
    tops = dict.fromkeys(m.split(".")[0] for m in feature_modules(module))
    return tuple(t for t in tops if t in children)


def head_modules(module: Any) -> tuple[str, ...]:
    """Top-level children that run after the model's last feature stage (timm's forward_head part:
    head convs, pooling, classifier), found from the model's own feature_info, never by name."""
    if hasattr(getattr(module, "feature_info", None), "module_name"):
        return ()  # a features_only wrapper: feature maps out, no head
    names = [n for n, _ in module.named_children()]
    body = body_modules(module)
    if not body:
        return ()
    return tuple(names[names.index(body[-1]) + 1 :])


def units(module: Any) -> list[str]:
    """Module paths, in forward order, that partition the model: each top-level child outside the
    body (timm's feature stages: quantize.ptq.body_modules), and each block inside it
    (``blocks.3.1`` for timm's nested stages, ``layer2.1`` for a ResNet)."""
    import torch

    out: list[str] = []
    body = body_modules(module)
    for name, child in module.named_children():
        stages = list(child.named_children())
        if name not in body or not any(True for _, st in stages for _ in st.children()):
            out.append(name)  # outside the body, or a body part without blocks (a stem norm)
            continue
        for sname, stage in stages:
            subs = list(stage.named_children())
            if subs and isinstance(stage, (torch.nn.Sequential, torch.nn.ModuleList)):  # a stage of blocks
                out.extend(f"{name}.{sname}.{b}" for b, _ in subs)
            else:
                out.append(f"{name}.{sname}")
    return [u for u in out if any(True for _ in module.get_submodule(u).parameters())]


def subtree_patterns(paths: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """keep_float patterns covering each module path and everything inside it."""
    return tuple(p for u in paths for p in (u, f"{u}.*"))


def float_patterns(module: Any, config: PTQConfig) -> tuple[str, ...]:
    """The keep-float patterns in force: the user's plus, with ``float_head``, the head's, and with
    ``float_depthwise``, every depthwise convolution's."""
    dw = tuple(depthwise_modules(module)) if config.float_depthwise else ()
    return config.keep_float + subtree_patterns(head_modules(module) if config.float_head else ()) + dw


def depthwise_modules(module: Any) -> list[str]:
    """Paths of the depthwise convolutions (one input channel per group), found by type."""
    import torch

    return [name for name, m in module.named_modules()
            if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]


def check_keep_float(module: Any, patterns: tuple[str, ...]) -> None:
    """Every keep-float pattern names at least one module path of ``module``. Why: a pattern that
    matches nothing (a typo, another model's names) would quantize everything it was meant to keep."""
    paths = [name for name, _ in module.named_modules() if name]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in paths)]
    if unmatched:
        top = ", ".join(name for name, _ in module.named_children())
        raise EdgeError(f"--keep-float {', '.join(repr(p) for p in unmatched)} matches no module of the model "
                        f"(module paths start with: {top})")


def quantize_ptq(module: Any, example: Any, calib_images: Any, config: PTQConfig, quantizer: str) -> Any:
    """Return the converted (q/dq) GraphModule, ready for the target's lowering. Calibrates on
    every image given (the exporter sized the set)."""
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "int8 quantization")
    effective = dataclasses.replace(config, keep_float=float_patterns(module, config))
    prepared = pt2e.prepare_pt2e(export_for_quantization(module, example).module(),
                                 make_quantizer(quantizer, effective))
    # dynamic activations have no ranges to calibrate: two images only trace the observers' placeholders
    calibrate(prepared, calib_images[:2] if config.activations == "dynamic" else calib_images, config.calib_batch)
    if config.observer == "search":
        from quantize.range_search import search_ranges

        search_ranges(prepared, calib_images[: config.search_images])
    converted = pt2e.convert_pt2e(prepared)
    from torchao.quantization.pt2e import move_exported_model_to_eval

    move_exported_model_to_eval(converted)
    if config.activations == "dynamic":
        # its ranges are measured per call: over a batch in PyTorch, over one image on the device
        converted.meta["per_image"] = True
    return converted
