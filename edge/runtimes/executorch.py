"""ExecuTorch's own runtime (pybindings, XNNPACK delegate compiled in) running a `.pte` file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge._deps import require
from edge.errors import EdgeError
from edge.runtimes import register
from edge.runtimes.base import Runtime, Session


class ExecuTorchSession(Session):
    def __init__(self, method: Any, batch: int) -> None:
        self.method = method
        self.batch_size = batch

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        outs = self.method.execute([torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])
        return [o.detach().float().numpy() for o in outs]


@register
class ExecuTorchRuntime(Runtime):
    name = "executorch"
    suffixes = (".pte",)

    def load(self, artifact: Path | Any, threads: int | None = None) -> Session:
        rt_mod = require("executorch.runtime", "running a .pte")
        path = Path(artifact)
        if not path.is_file():
            raise EdgeError(f"artifact {path} does not exist")
        if threads:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        try:
            program = rt_mod.Runtime.get().load_program(path)
            method = program.load_method("forward")
        except RuntimeError as exc:
            raise EdgeError(f"{path} is not a loadable ExecuTorch program: {exc}") from exc
        if method is None:
            raise EdgeError(f"{path} has no 'forward' method")
        meta = method.metadata
        shape = tuple(meta.input_tensor_meta(0).sizes())
        return ExecuTorchSession(method, int(shape[0]))

    def version(self) -> str:
        from importlib.metadata import version

        return version("executorch")
