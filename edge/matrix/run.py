"""The matrix job: for every model load it and its images once, then build every (target,
precision) cell on worker processes — export, run on the runtime against eager PyTorch — and time
each afterwards in this process, one at a time, as the report does.

Why cells catch every exception: a matrix exists to show where third-party converters fail on
models nobody has tried, so each converter's own error type (torch.export, onnx2tf, TensorFlow,
coremltools) is the cell's result, recorded with the stage that raised it; a converter that
kills its process (a native abort) is a cell too (``run_tasks(crashes=True)``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import EdgeError, first_line
from edge.harness import latency
from edge.io import ensure_writable_dir
from edge.manifest import package_versions
from edge.matrix import MODELS
from edge.matrix.limits import explain
from edge.models import ModelSpec, check_spec
from edge.pipeline import Inputs, load_inputs
from edge.progress import say
from edge.report.build import Built, Crashed, Held, Task, build_or_take, check_built, run_tasks
from edge.report.cache import ArtifactCache
from edge.report.run import REUSE_COST, host_facts
from edge.report.schema import finite
from edge.runtimes import runtime_for
from edge.validate import at_least, image_args, output_folder
from quantize.config import PTQConfig

SCHEMA = "edge.matrix/1"
FP32_PARITY_DB = 60.0  # an fp32 artifact reproduces eager PyTorch (issue 14's bar)
SLOWER_TOLERANCE = 1.05  # int8 p50 over fp32 p50 still counted "no slower": run-to-run noise
# ops outside the delegate that move or re-label data rather than compute (dim-order copies,
# views, the float I/O's quantize/dequantize): left out, they cost copies, not kernels
_LAYOUT_OP = re.compile(r"view|reshape|squeeze|clone|dim_order|_to_copy|getitem|expand|alias|quantize", re.I)
STAGES = ("load", "export", "run", "time")


@dataclass(frozen=True)
class MatrixConfig:
    """What the matrix builds and how it measures; int8 is each target's default PTQ recipe."""

    models: tuple[str, ...] = MODELS
    targets: tuple[str, ...] = ()  # () = every registered target
    precisions: tuple[str, ...] = ("fp32", "int8")
    input_size: int | None = 64  # square side; None: each model's timm default
    weights: str = "random"  # hub, auto, random or a file (one file fits one model)
    calib_size: int = 16
    eval_size: int = 16
    threads: int = 2
    runs: int = 20
    warmup: int = 3
    workers: int = 2
    reuse: bool = True
    artifacts: Path | None = None  # default: OUT/artifacts

    def __post_init__(self) -> None:
        if not self.models:
            raise EdgeError("--models needs at least one timm model name")
        if self.runs < 1 or self.warmup < 0 or self.threads < 1 or self.workers < 1:
            raise EdgeError("--runs, --threads and --workers must be at least 1, --warmup at least 0")
        at_least("--calib-size", self.calib_size, 1)
        at_least("--eval-size", self.eval_size, 1)
        if self.weights not in ("hub", "auto", "random") and len(self.models) != 1:
            raise EdgeError("a weights file fits one model: give --models with one name, or --weights random")


@dataclass(frozen=True)
class CellWork:
    """A cell's work in its worker: the artifact and its check, or the stage that failed."""

    built: Built | None
    verification: Any  # edge.harness.Verification
    key: str
    reused: bool
    stage: str | None = None
    reason: str | None = None


def cell_work(exporter: Any, request: Any, dest: Path, reuse: dict[str, Any] | None, held: Held, *,
              threads: int) -> CellWork:
    """Export (or reuse) the cell's artifact and run it on its runtime: a failure at either stage
    is the answer, with the stage."""
    key, stage = request.key(), "export"
    try:
        built, reference = build_or_take(exporter, request, dest, reuse)
        stage = "run"
        verification = check_built(request, built, reference, held, threads)
    except Exception as exc:  # noqa: BLE001 - any converter's or runtime's failure is the cell's row
        return CellWork(None, None, key, False, stage, _reason(exc))
    return CellWork(built, verification, key, reuse is not None)


def summary(work: CellWork) -> str:
    """A cell's answer for the console."""
    if work.stage is not None:
        return f"{work.stage} failed: {work.reason}"
    b = work.built
    assert b is not None and b.artifact is not None and b.manifest is not None
    return f"{'reused' if work.reused else 'wrote'} {b.artifact.name} ({b.manifest['size_bytes'] / 1e6:.2f} MB)"


def _reason(exc: BaseException) -> str:
    return first_line(exc) if isinstance(exc, EdgeError) else f"{type(exc).__name__}: {first_line(exc)}"[:400]


def empty_cell(model: str, target: str, precision: str) -> dict[str, Any]:
    return {"model": model, "target": target, "precision": precision, "status": "fail", "stage": None,
            "reason": None, "artifact": None, "size_bytes": None, "export_s": None, "reused": False,
            "measured": False, "sqnr_vs_float_db": None, "sqnr_vs_program_db": None, "agreement_top1": None,
            "delegation": None, "compute_ops_left": None, "latency_ms": None, "int8_over_fp32": None,
            "goal": None, "limits": [], "notes": []}


def failed(cell: dict[str, Any], stage: str, reason: str) -> dict[str, Any]:
    cell.update(status="fail", stage=stage, reason=reason)
    return cell


def compute_ops_left(delegation: dict[str, Any] | None) -> dict[str, int] | None:
    """The ops outside the XNNPACK delegate that compute (layout and I/O ops do not count)."""
    if delegation is None:
        return None
    left = delegation.get("non_delegated_by_op") or {}
    return {op: n for op, n in left.items() if not _LAYOUT_OP.search(op)}


class MatrixRun:
    """The cells of one matrix run: their tasks, then their figures and timing."""

    def __init__(self, out: Path, cfg: MatrixConfig, exporters: dict[str, Any], calib: str) -> None:
        self.out, self.cfg, self.exporters, self.calib = out, cfg, exporters, calib
        self.artifacts = cfg.artifacts or out / "artifacts"
        self.cache = ArtifactCache(self.artifacts)

    def inputs(self, name: str) -> Inputs:
        cfg = self.cfg
        spec = ModelSpec(name, weights=cfg.weights, input_size=cfg.input_size)
        check_spec(spec)
        return load_inputs(spec, self.calib, cfg.calib_size, None, cfg.eval_size, require_calib=True)

    def task(self, inputs: Inputs, target: str, precision: str) -> Task:
        """The cell's task; an unbuildable recipe raises EdgeError here, before any work."""
        exporter, model = self.exporters[target], inputs.model
        exporter.check(import_them=False)
        quant = PTQConfig(calib_size=self.cfg.calib_size) if precision in exporter.quantized_precisions else None
        request = exporter.request(model, exporter.recipe(precision, quant), inputs.calib, inputs.calib_source)
        dest = self.artifacts / model.spec.name.replace("/", "_")
        artifact = dest / exporter.filename(model, precision)
        manifest = self.cache.reusable(artifact, request.key()) if self.cfg.reuse else None
        assert inputs.eval_images is not None and inputs.float_outputs is not None
        held = Held(inputs.eval_images, inputs.eval_labels, inputs.float_outputs)
        cost = REUSE_COST if manifest is not None else exporter.build_cost.get(precision, 1.0)
        return Task(f"{model.spec.name} {target} {precision}", cell_work, (exporter, request, dest, manifest, held),
                    cost, summary)

    def finish(self, cell: dict[str, Any], answer: CellWork | Crashed, example: Any) -> None:
        """The cell's figures from its worker's answer, then its latency, measured here."""
        if isinstance(answer, Crashed):
            failed(cell, "export", answer.reason)
            return
        if answer.stage is not None:
            failed(cell, answer.stage, answer.reason or "")
            return
        built, ver = answer.built, answer.verification
        assert built is not None and built.artifact is not None and built.manifest is not None
        if not answer.reused and self.cfg.reuse:
            self.cache.record(built.artifact, answer.key)
        m = built.manifest
        cell.update(artifact=str(built.artifact), size_bytes=m["size_bytes"], export_s=m["export_seconds"],
                    reused=answer.reused, delegation=m.get("delegation"), measured=ver.measured,
                    sqnr_vs_float_db=finite(ver.vs_float["sqnr_db"]),
                    agreement_top1=ver.vs_float["agreement_top1"],
                    compute_ops_left=compute_ops_left(m.get("delegation")))
        cell["notes"] += list(ver.notes)
        if ver.vs_reference is not None:
            cell["sqnr_vs_program_db"] = finite(ver.vs_reference["sqnr_db"])
        runtime = runtime_for(built.artifact)
        reason = runtime.unavailable_reason()
        if reason:
            cell["notes"].append(f"latency not measured: {reason}")
        else:
            try:
                session = runtime.load(built.artifact, threads=self.cfg.threads)
                lat = latency(session, example, self.cfg.runs, self.cfg.warmup, self.cfg.threads,
                              desc=f"timing {cell['model']} {cell['target']} {cell['precision']}")
            except Exception as exc:  # noqa: BLE001 - as in cell_work: the runtime's failure is the row
                failed(cell, "time", _reason(exc))
                return
            cell["latency_ms"] = {k: lat[k] for k in ("p50", "p90", "min", "runs", "threads")}
        cell["status"] = "ok"


RANDOM_INT8 = "random weights: int8 fidelity vs float not judged (only vs its own program)"


def judge(cells: list[dict[str, Any]], trained: bool) -> None:
    """Each built cell against issue 14's goals: fp32 reproduces eager PyTorch (≥ 60 dB); int8 runs
    with every compute op in the delegate and is no slower than the model's fp32 artifact. A cell
    that ran but misses a goal is "warn", with the goal it missed. Random-weight int8 fidelity is
    not judged (it means nothing), only whether the artifact matches its own fake-quant program.
    A failed cell, or one whose only miss is ops outside XNNPACK, that known upstream limits
    explain (edge.matrix.limits) is "limit", with the reasons. Judging again gives the same result
    (benchmarks/bench_matrix.py --rejudge re-reads a run after the limits table changes)."""
    fp32 = {(c["model"], c["target"]): c for c in cells if c["precision"] == "fp32"}
    for c in cells:
        c["limits"] = []
        if c["stage"] is not None or not c["artifact"]:
            c["status"] = "fail"
            c["limits"] = [dataclasses.asdict(lim) for lim in explain(c)]
            if c["limits"]:
                c["status"] = "limit"
            continue
        missed: list[str] = []
        if c["precision"] == "fp32" and c["measured"]:
            db = c["sqnr_vs_float_db"]
            if db is not None and db < FP32_PARITY_DB:
                missed.append(f"SQNR vs eager {db:.1f} dB < {FP32_PARITY_DB:.0f}")
        if c["compute_ops_left"]:
            missed.append("outside XNNPACK: " + ", ".join(f"{op}×{n}" for op, n in c["compute_ops_left"].items()))
        f = fp32.get((c["model"], c["target"]))
        p50 = (c["latency_ms"] or {}).get("p50")
        f50 = ((f or {}).get("latency_ms") or {}).get("p50")
        if c["precision"] != "fp32" and p50 and f50:
            c["int8_over_fp32"] = round(f50 / p50, 3)  # a speed-up: > 1 is faster
            if p50 > f50 * SLOWER_TOLERANCE:
                missed.append(f"slower than fp32 ({f50 / p50:.2f}×)")
        if c["precision"] != "fp32" and not trained and RANDOM_INT8 not in c["notes"]:
            c["notes"].append(RANDOM_INT8)
        c["goal"] = "; ".join(missed) or None
        c["status"] = "warn" if missed else ("simulated" if not c["measured"] else "ok")
        if c["status"] == "warn":
            c["limits"] = [dataclasses.asdict(lim) for lim in explain(c)]
            if c["limits"] and len(missed) == 1:  # the one miss is ops that upstream cannot take
                c["status"] = "limit"


def run_matrix(out: Path, cfg: MatrixConfig, calib: str) -> dict[str, Any]:
    """Every cell of ``cfg`` into one result dict (edge.matrix/1)."""
    from exporters import get_exporter, targets

    t_start = time.perf_counter()
    if not cfg.targets:
        cfg = dataclasses.replace(cfg, targets=tuple(targets()))
    exporters = {t: get_exporter(t) for t in cfg.targets}  # unknown target -> EdgeError now
    for p in cfg.precisions:
        if not any(p in e.precisions for e in exporters.values()):
            raise EdgeError(f"no target exports precision {p!r}")
    for name in cfg.models:  # names and the weights source, before any model is built
        check_spec(ModelSpec(name, weights=cfg.weights, input_size=cfg.input_size))
    image_args({"--calib": calib}, None)
    output_folder(out)
    ensure_writable_dir(out)
    run = MatrixRun(out, cfg, exporters, calib)
    cells: list[dict[str, Any]] = []
    work: list[tuple[dict[str, Any], Task, Any]] = []  # cell, its task, the timing input
    weights: dict[str, str] = {}
    for i, name in enumerate(cfg.models, 1):
        say(f"[model {i}/{len(cfg.models)}] {name}: loading the model and {cfg.calib_size + cfg.eval_size} images")
        try:
            inputs = run.inputs(name)
        except Exception as exc:  # noqa: BLE001 - a model timm cannot build or run is its cells' row
            cells += [failed(empty_cell(name, t, p), "load", _reason(exc)) for t in cfg.targets for p in cfg.precisions
                      if p in exporters[t].precisions]
            continue
        weights[name] = inputs.model.weights_source
        for target in cfg.targets:
            for precision in (p for p in cfg.precisions if p in exporters[target].precisions):
                cell = empty_cell(name, target, precision)
                cell["notes"] += list(inputs.model.notes)
                cells.append(cell)
                try:
                    task = run.task(inputs, target, precision)
                except EdgeError as exc:
                    failed(cell, "export", first_line(exc))
                    continue
                assert inputs.eval_images is not None
                work.append((cell, task, inputs.eval_images[:1]))
    t_work = time.perf_counter()
    answers = run_tasks([t for _, t, _ in work], cfg.workers, cfg.threads, crashes=True, tasks_per_worker=8)
    t_timing = time.perf_counter()
    for k, ((cell, _, example), answer) in enumerate(zip(work, answers, strict=True), 1):
        say(f"[{k}/{len(work)}] timing {cell['model']} {cell['target']} {cell['precision']}")
        run.finish(cell, answer, example)
    trained = cfg.weights not in ("random",) and not any(w.startswith("random") for w in weights.values())
    judge(cells, trained)
    t_end = time.perf_counter()
    return {
        "schema": SCHEMA,
        "settings": {**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "artifacts"},
                     "calib": calib, "trained_weights": trained},
        "weights": weights,
        "host": host_facts(),
        "versions": package_versions(("torch", "timm", *(v for e in exporters.values() for v in e.versions))),
        "cells": cells,
        "seconds": round(t_end - t_start, 1),
        "stage_seconds": {"models_and_images": round(t_work - t_start, 1),
                          "exports_and_checks": round(t_timing - t_work, 1), "timing": round(t_end - t_timing, 1)},
    }
