"""Bias correction (Nagel et al., "Data-Free Quantization", the empirical variant): int8 rounding of
a layer's weights shifts the mean of each of its output channels by E[(W - Q(W)) x]; measured on
the calibration images and added to the layer's bias, the quantized layer keeps the float means.

A float-model transform, so every target's flow gets it (the ExecuTorch and Core ML quantizers
quantize the corrected model; the TFLite converter calibrates it). The rounding modelled is the
one every edge quantizer uses for weights: symmetric int8 per output channel (or per tensor),
of the weight as the quantizer sees it — a conv followed by a BatchNorm is quantized with the
BatchNorm folded in, so the error is taken on the folded weight and moved back through the
BatchNorm's scale. Layers a recipe keeps float are left alone.
"""

from __future__ import annotations

import copy
import fnmatch
from typing import Any

from edge.progress import bar


def _rounded(w: Any, per_channel: bool) -> Any:
    """Symmetric int8 fake-quant of ``w`` (levels -127..127), per output channel or per tensor."""
    import torch

    amax = w.abs().flatten(1).amax(1) if per_channel else w.abs().amax().expand(w.shape[0])
    scale = (amax / 127.0).clamp_min(torch.finfo(w.dtype).tiny).view(-1, *[1] * (w.dim() - 1))
    return (w / scale).round().clamp(-127, 127) * scale


def _followers(module: Any, example: Any) -> dict[str, Any]:
    """Conv/Linear module name -> the BatchNorm that reads its output directly (found by running
    the model once and matching tensors: no module names assumed)."""
    import torch

    made: dict[int, str] = {}
    read: dict[str, Any] = {}
    hooks = []
    for name, m in module.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(m.register_forward_hook(lambda _m, _i, out, n=name: made.__setitem__(id(out), n)))
        elif isinstance(m, torch.nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(
                lambda bn, args: read.__setitem__(made[id(args[0])], bn) if id(args[0]) in made else None))
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return read


def correct_biases(module: Any, images: Any, keep_float: tuple[str, ...] = (), per_channel: bool = True,
                   batch: int = 32) -> tuple[Any, int]:
    """A copy of ``module`` with each quantized Conv2d/Linear bias corrected for its weights'
    int8 rounding on ``images`` (NCHW, the model's preprocessing); and how many layers changed."""
    import torch
    import torch.nn.functional as F

    model = copy.deepcopy(module).eval()
    bns = _followers(model, images[:1])
    layers = {name: m for name, m in model.named_modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
              and not any(fnmatch.fnmatchcase(name, p) for p in keep_float)}
    scales: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for name, m in layers.items():
        s = torch.ones(m.weight.shape[0])
        bn = bns.get(name)
        if bn is not None:
            s = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        w = m.weight.detach() * s.view(-1, *[1] * (m.weight.dim() - 1))
        scales[name], errors[name] = s, w - _rounded(w, per_channel)
    sums = {name: torch.zeros(m.weight.shape[0]) for name, m in layers.items()}
    count = {name: 0 for name in layers}

    def hook(name: str) -> Any:
        m = layers[name]

        def record(_m: Any, args: tuple[Any, ...]) -> None:
            x = args[0]
            if isinstance(m, torch.nn.Conv2d):
                y = F.conv2d(x, errors[name], None, m.stride, m.padding, m.dilation, m.groups)
                sums[name] += y.sum((0, 2, 3))
                count[name] += y.shape[0] * y.shape[2] * y.shape[3]
            else:
                y = F.linear(x, errors[name]).reshape(-1, errors[name].shape[0])
                sums[name] += y.sum(0)
                count[name] += y.shape[0]

        return record

    hooks = [m.register_forward_pre_hook(hook(name)) for name, m in layers.items()]
    try:
        with torch.no_grad(), bar(total=len(images), desc="bias correction", unit="img") as pbar:
            for i in range(0, len(images), batch):
                model(images[i : i + batch])
                pbar.update(min(batch, len(images) - i))
    finally:
        for h in hooks:
            h.remove()
    changed = 0
    with torch.no_grad():
        for name, m in layers.items():
            if not count[name]:
                continue
            s = scales[name]
            ok = s.abs() > 1e-8  # a channel a BatchNorm zeroes needs no correction
            delta = torch.where(ok, sums[name] / count[name] / torch.where(ok, s, torch.ones_like(s)),
                                torch.zeros_like(s))
            if m.bias is None:
                m.bias = torch.nn.Parameter(torch.zeros_like(delta))
            m.bias += delta.to(m.bias.dtype)
            changed += 1
    return model, changed
