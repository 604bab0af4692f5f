"""Imports run in one direction (docs/architecture.md): the import graph of edge/, quantize/ and
exporters/, read statically (ast, imports inside functions too), has no cycle and no import from a
layer into one above it. Nothing is imported, so this runs in milliseconds."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "quantize", "exporters")

# layer -> the modules in it (a name and everything below it). The longest matching prefix decides,
# so "edge" catches the ground modules left over (models, data, io, manifest, metrics, errors, ...).
LAYERS: dict[str, tuple[str, ...]] = {
    "commands": ("edge.cli", "edge.commands"),
    "jobs": ("edge.pipeline", "edge.qat", "edge.report", "edge.matrix", "edge.demo", "edge.finetune"),
    "bench": ("edge.bench",),
    "harness": ("edge.harness", "edge.profile"),
    "exporters": ("exporters",),
    "runtimes": ("edge.runtimes",),
    "quantize": ("quantize",),
    "ground": ("edge",),
}
# layer -> the layers below it that it may import (its own layer always). Commands read the
# registries (exporters) and build configs (quantize) for argparse, but only a job imports both.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "commands": frozenset({"jobs", "bench", "exporters", "quantize", "ground"}),
    "jobs": frozenset({"bench", "harness", "exporters", "runtimes", "quantize", "ground"}),
    "bench": frozenset({"exporters", "ground"}),  # bench results name targets from the registry
    "harness": frozenset({"runtimes", "ground"}),
    "exporters": frozenset({"runtimes", "quantize", "ground"}),
    "runtimes": frozenset({"ground"}),
    "quantize": frozenset({"ground"}),
    "ground": frozenset(),
}
# one module that is copied to devices and imports nothing of the project (tests/test_bench.py)
STANDALONE = ("edge.bench.device_runner",)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The project module ``name`` means (an attribute import resolves to its module)."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports() -> dict[str, frozenset[str]]:
    """module -> the project modules it imports anywhere in its body."""
    graph: dict[str, frozenset[str]] = {}
    for mod, path in modules().items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{a.name}" for a in node.names]
            for n in names:
                target = _resolve(n)
                if target is not None and target != mod:
                    found.add(target)
        graph[mod] = frozenset(found)
    return graph


def layer_of(mod: str) -> str:
    best = max(((p, layer) for layer, prefixes in LAYERS.items() for p in prefixes
                if mod == p or mod.startswith(p + ".")), key=lambda pl: len(pl[0]), default=None)
    assert best is not None, f"{mod} is in no layer of LAYERS"
    return best[1]


def test_layer_map_is_consistent() -> None:
    assert set(MAY_IMPORT) == set(LAYERS)
    for layer, below in MAY_IMPORT.items():
        assert layer not in below and below <= set(LAYERS), layer
    for mod in modules():
        layer_of(mod)


def test_no_import_cycle() -> None:
    graph = imports()
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(mod: str) -> None:
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod)


def test_no_upward_import() -> None:
    bad = []
    for mod, deps in sorted(imports().items()):
        layer = layer_of(mod)
        for dep in sorted(deps):
            other = layer_of(dep)
            if other != layer and other not in MAY_IMPORT[layer]:
                bad.append(f"{mod} ({layer}) imports {dep} ({other})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_only_jobs_import_both_quantize_and_exporters() -> None:
    both = [mod for mod, deps in sorted(imports().items())
            if layer_of(mod) != "jobs" and {"quantize", "exporters"} <= {layer_of(d) for d in deps} - {layer_of(mod)}]
    assert not both, f"outside the jobs layer, these import both quantize/ and exporters/: {both}"


def test_standalone_modules_import_nothing_of_the_project() -> None:
    for mod in STANDALONE:
        assert not imports()[mod], f"{mod} imports {sorted(imports()[mod])}"


def test_registries_agree() -> None:
    """The device runner (which cannot import the registry on a device) keys its loaders by the
    registry's targets and suffixes; each target names a runtime that runs its suffix."""
    from edge.bench import device_runner
    from edge.runtimes import runtime_for
    from exporters import exporter_class, targets

    assert {t: suffix for t, (suffix, _) in device_runner.LOADERS.items()} == \
        {t: exporter_class(t).suffix for t in targets()}
    for t in targets():
        cls = exporter_class(t)
        assert cls.suffix in type(runtime_for(cls.runtime)).suffixes, t
        # int8 is made by exactly one of: a PT2E quantizer, the target's own converter
        assert not cls.quantized_precisions or (cls.quantizer is None) == cls.calibrates_itself, t
