"""Optional dependencies, checked when used (httpx style) so `import edge` stays light."""

from __future__ import annotations

import importlib
from importlib.util import find_spec
from types import ModuleType

from edge.errors import EdgeError

# module -> what to install to get it
_HINTS: dict[str, str] = {
    "torch": "pip install 'edge[torch]'  (or run `make venv`)",
    "timm": "pip install 'edge[torch]'",
    "safetensors": "pip install safetensors",
    "executorch": "pip install 'edge[executorch]'",
    "torchao": "pip install 'edge[executorch]'",
    "onnx": "pip install 'edge[tflite]'",
    "onnx_graphsurgeon": "pip install 'edge[tflite]'",
    "onnx2tf": "pip install --no-deps onnx2tf==1.29.24",
    "tensorflow": "pip install 'edge[tflite]'",
    "ai_edge_litert": "pip install ai-edge-litert",
    "coremltools": "pip install coremltools",
    "matplotlib": "pip install 'edge[report]'",
}


def has(module: str) -> bool:
    """True when ``module`` can be imported, without importing it."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# Packages that load TensorFlow's native libraries when imported.
_LOADS_TENSORFLOW = {"tensorflow", "coremltools", "onnx2tf", "tf_keras"}


def installed(module: str, purpose: str) -> None:
    """Raise an EdgeError naming what needs ``module`` and how to install it, when it is not
    installed (nothing is imported: a cheap check before work starts)."""
    top = module.split(".")[0]
    if not has(top):
        hint = _HINTS.get(top, f"pip install {top}")
        raise EdgeError(f"{purpose} needs the Python package '{top}', which is not installed: {hint}")


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise an EdgeError naming what needs it and how to install it."""
    installed(module, purpose)
    top = module.split(".")[0]
    if top in _LOADS_TENSORFLOW and has("triton"):
        # Why: with TensorFlow 2.21 loaded first, the later import of Triton's native module
        # (torch/torchao pull it in) segfaults the process; loaded in this order both work.
        importlib.import_module("triton")
    return importlib.import_module(module)
