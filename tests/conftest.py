"""Shared fixtures. Exports are slow (seconds to tens of seconds), so every artifact comes from one
session-scoped store keyed by its recipe and is built at small input sizes; real images come from
../shared/data beside the project root, and int8 fidelity is judged on the trained reference there.

Under pytest-xdist (`make test` runs `-n 2`), session fixtures exist once per worker: test modules
that share heavy fixtures carry the same ``xdist_group`` mark, and the scheduler below sends each
group to one worker; each worker uses one thread for torch and TensorFlow (two workers, two cores).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from edge.reference import CIFAR_FILE, REFERENCE_FILE, data_root

ROOT = Path(__file__).resolve().parents[1]
DATA = data_root().resolve()
IMAGENET = DATA / "imagenet-sample"
CIFAR = DATA / CIFAR_FILE
REFERENCE = DATA / REFERENCE_FILE

os.environ.setdefault("EDGE_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, "1")


def require_tool(name: str, package: str) -> str:
    """Path of a system tool (from .ci/apt-packages.txt). Missing: skip here, fail in CI
    (EDGE_REQUIRE_SYSDEPS=1), so a test that needs a real tool never passes without it."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        msg = f"{name} not found: install the Debian package {package} (make sysdeps)"
        if os.environ.get("EDGE_REQUIRE_SYSDEPS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def pytest_configure(config: pytest.Config) -> None:
    missing = [p for p in (IMAGENET, CIFAR, REFERENCE) if not p.exists()]
    if missing:
        raise pytest.UsageError(f"the tests read real images and the trained reference from {DATA}; "
                                f"missing: {', '.join(p.name for p in missing)}")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


# --- one worker per group of modules ---------------------------------------------------------------

_GROUP = re.compile(r'^pytestmark = pytest\.mark\.xdist_group\("([\w-]+)"\)', re.M)


@functools.cache
def module_group(path: str) -> str:
    """A test module's ``xdist_group`` (its module-level pytestmark), else the module itself."""
    try:
        found = _GROUP.search((ROOT / path).read_text())
    except OSError:
        return path
    return f"group:{found.group(1)}" if found else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Each group of modules to one worker. Why not `--dist loadgroup`: with pytest 9 its node-id
    suffix no longer reaches the scheduler, and the groups were silently split across workers."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return module_group(nodeid.split("::", 1)[0])

    return ModuleGroups(config, log)


# --- the CLI, in-process ----------------------------------------------------------------------------

class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def edge_main(*args: str | Path) -> CliResult:
    """`edge ARGS…` run in this process (no torch import per call): exit status, stdout, stderr.
    One subprocess test per command (tests/test_cli.py) covers the real entry point."""
    from edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_one_line_error(res: CliResult, pattern: str) -> None:
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("edge: error:")]
    assert len(lines) == 1 and pattern in lines[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr


# --- models and images --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def imagenet() -> Path:
    return IMAGENET


@pytest.fixture(scope="session")
def reference_weights() -> Path:
    """The trained CIFAR-10 reference from ../shared/data (sha256 checked): int8 fidelity means
    nothing on random weights, whose logits amplify any noise."""
    from edge.reference import reference_weights as checked

    return checked(check_sha256=True)  # an EdgeError names a missing or altered file


def _tiny(mode: str, calib: int = 8, eval_size: int = 4):
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs

    spec = ModelSpec(name="test_efficientnet", weights="random", input_size=32, mode=mode)
    return load_inputs(spec, str(IMAGENET), calib, eval_size=eval_size)


@pytest.fixture(scope="session")
def tiny_inputs():
    """timm's own small test network (test_efficientnet: MBConv, SE, SiLU) at 32 px, random weights:
    for tests where the network does not matter (modes, runners, transports, the CLI, I/O types)."""
    return _tiny("classifier")


@pytest.fixture(scope="session")
def tiny_embeddings():
    return _tiny("embeddings")


@pytest.fixture(scope="session")
def tiny_features():
    return _tiny("features")


@pytest.fixture(scope="session")
def reference_inputs(reference_weights: Path):
    """The reference model, 256 calibration images from cifar10/train, 500 held-out cifar10/test images."""
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs

    spec = ModelSpec(weights=str(reference_weights), input_size=32)
    return load_inputs(spec, f"{CIFAR}::cifar10/train", 256, eval_data=f"{CIFAR}::cifar10/test", eval_size=500)


# --- one store of exported artifacts --------------------------------------------------------------------

class ArtifactStore:
    """Each distinct (inputs, target, precision, quantization recipe, options) is exported and
    verified once per session; every test file asks the store instead of exporting its own copy.
    Artifacts sit in one folder with the report's record of recipe keys (edge/report/cache.py), in
    the report's layout, so `edge report --artifacts store.folder` reuses them too."""

    def __init__(self, root: Path, request: pytest.FixtureRequest) -> None:
        from edge.report.cache import ArtifactCache

        self.folder, self.request = root / "artifacts", request
        self.cache = ArtifactCache(self.folder)
        self._done: dict[str, dict[str, Any]] = {}

    def get(self, inputs: str, target: str, precision: str, quant: Any = None,
            options: dict[str, str] | None = None) -> dict[str, Any]:
        """``inputs``: the name of an inputs fixture (reference_inputs, tiny_inputs, ...)."""
        from edge.pipeline import build_and_verify
        from edge.report.run import method_of
        from exporters import get_exporter

        key = repr((inputs, target, precision, quant, sorted((options or {}).items())))
        if key not in self._done:
            inp = self.request.getfixturevalue(inputs)
            exporter = get_exporter(target, **(options or {}))
            recipe = exporter.recipe(precision, quant)
            # the report's sub-folder for the method; other options or inputs get their own
            sub = method_of(precision)
            if getattr(quant, "activations", "static") != "static":  # the report's recipe row folder
                sub = quant.activations
            if options:
                sub += "-" + "-".join(f"{k}={v}" for k, v in sorted(options.items()))
            if inputs != "reference_inputs":
                sub += f"-{inputs}"
            self._done[key] = {**build_and_verify(exporter, recipe, inp, self.folder / sub, cache=self.cache),
                               "inputs": inp}
        return dict(self._done[key])


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> ArtifactStore:
    return ArtifactStore(tmp_path_factory.mktemp("store"), request)


@pytest.fixture(scope="session")
def session_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def unconvertible_model(tiny_inputs):
    """A LoadedModel with its module swapped for one built on an op (svdvals) that
    neither ONNX/onnx2tf nor coremltools converts."""
    import dataclasses

    import torch

    class Svd(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svdvals(x.mean(1))

    return dataclasses.replace(tiny_inputs.model, module=Svd().eval(), output_names=["s"])
