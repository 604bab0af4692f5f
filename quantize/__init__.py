"""Quantization recipes: ``quantize(model, example, images, config, quantizer)`` dispatches on the
config's type, torchao-style; a new recipe is a config dataclass plus one handler registered here.
Heavy imports happen inside the handlers. QAT is a training job (edge.qat), not a handler: its
trained program reaches the exporter as a quantize.qat.QATProgram."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from edge.errors import EdgeError
from quantize.config import OBSERVERS, AutoConfig, PTQConfig, QATConfig

_HANDLERS: dict[type, Callable[..., Any]] = {}


def register_handler(config_type: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        _HANDLERS[config_type] = fn
        return fn

    return deco


@register_handler(PTQConfig)
def _ptq(module: Any, example: Any, images: Any, config: PTQConfig, quantizer: str) -> Any:
    from quantize.ptq import quantize_ptq

    return quantize_ptq(module, example, images, config, quantizer)


@register_handler(AutoConfig)
def _auto(module: Any, example: Any, images: Any, config: AutoConfig, quantizer: str) -> Any:
    from quantize.auto import quantize_auto

    return quantize_auto(module, example, images, config, quantizer)


# Named int8 recipes beyond the default static PTQ, each a change of the PTQ config (the report adds
# one row per target that can build it: `edge report --recipes dynamic`)
RECIPES: dict[str, Callable[[PTQConfig], PTQConfig]] = {
    "dynamic": lambda cfg: dataclasses.replace(cfg, activations="dynamic", observer=None),
    "float-depthwise": lambda cfg: dataclasses.replace(cfg, float_depthwise=True),
}


def recipe_config(name: str, base: PTQConfig) -> PTQConfig:
    if name not in RECIPES:
        raise EdgeError(f"unknown recipe {name!r} (known: {', '.join(sorted(RECIPES))})")
    return RECIPES[name](base)


def recipes() -> list[str]:
    """The config types ``quantize()`` handles, by name."""
    return sorted(t.__name__ for t in _HANDLERS)


def quantize(module: Any, example: Any, images: Any, config: Any, quantizer: str) -> Any:
    """Quantize ``module`` for the named target quantizer, as ``config`` describes."""
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise EdgeError(f"no quantization handler for {type(config).__name__}")
    return handler(module, example, images, config, quantizer)


__all__ = ["OBSERVERS", "RECIPES", "AutoConfig", "PTQConfig", "QATConfig", "quantize", "recipe_config", "recipes",
           "register_handler"]
