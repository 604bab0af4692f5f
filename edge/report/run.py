"""The report run: load the model and images once, then for every (target, precision) export or
reuse the artifact, evaluate it on its real runtime against float on the same images, time it, and
collect one row each. One failing target becomes a row with the reason, not a failed report."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import EdgeError, first_line
from edge.harness import Verification, latency
from edge.io import ensure_writable_dir
from edge.manifest import package_versions
from edge.models import ModelSpec, check_spec
from edge.pipeline import Inputs, load_inputs
from edge.progress import say
from edge.report.build import Crashed, Held, Judged, Task, export_and_check, run_tasks
from edge.report.cache import ArtifactCache
from edge.report.schema import SCHEMA, add_note, empty_row, finite
from edge.report.sensitivity import layer_sensitivity
from edge.runtimes import runtime_for
from edge.validate import at_least, image_args, input_file, output_folder
from quantize.config import AutoConfig, PTQConfig


@dataclass(frozen=True)
class ReportConfig:
    """What to measure. The int8 knobs are the export's (PTQConfig); the rest are the report's."""

    targets: tuple[str, ...] = ()  # () = every registered target
    precisions: tuple[str, ...] = ("fp32", "int8")
    quant: PTQConfig = field(default_factory=PTQConfig)
    eval_size: int = 200
    threads: int = 2
    runs: int = 50
    warmup: int = 5
    sensitivity: bool = True
    keep_float_k: int = 0
    reuse: bool = True
    recalibrate_bn: bool = False
    qat: tuple[Path, ...] = ()  # QAT checkpoints (`edge qat --out`): one int8 "qat" row each
    artifacts: Path | None = None  # where artifacts are built and reused (default: OUT/artifacts)
    workers: int = 2  # processes building the missing artifacts side by side (1: in the report's own)
    recipes: tuple[str, ...] = ()  # extra int8 recipes (quantize.RECIPES): a row per target that builds it
    target_agreement: float | None = None  # adds an "auto" int8 row per PT2E target (quantize/auto.py)
    auto_search_images: int = 128

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0 or self.threads < 1 or self.workers < 1:
            raise EdgeError("--runs, --threads and --workers must be at least 1, --warmup at least 0")
        if self.keep_float_k < 0:
            raise EdgeError("--keep-float-top must be 0 or more")
        if self.keep_float_k and not self.sensitivity:
            raise EdgeError("--keep-float-top needs the sensitivity analysis (drop --no-sensitivity)")
        from quantize import RECIPES

        unknown = [r for r in self.recipes if r not in RECIPES]
        if unknown:
            raise EdgeError(f"unknown recipe {', '.join(unknown)} (--recipes takes {', '.join(sorted(RECIPES))})")


# queue order beside Exporter.build_cost (an fp32 build of a target is 1)
SENSITIVITY_COST = 1.5
REUSE_COST = 0.5  # a reused artifact: its check, and the quantized program it is compared with


def method_of(precision: str) -> str:
    return {"int8": "ptq", "w8": "weight-only"}.get(precision, "float")


def host_facts() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "arch": platform.machine()}


Job = tuple[str, str, "PTQConfig | None", str]  # target, precision, quantization config, artifacts sub-folder
# a row made after the main ones (QAT, kept-float): (target, precision, method), its task, a note
Later = tuple[tuple[str, str, str], "Task | EdgeError", "str | None"]


class ReportRun:
    """State shared by the rows of one report: inputs, float outputs, cache, output folder.

    A row is two steps: its work (export or reuse, then the check on the runtime: a Task, run on
    a worker or here) and its timing (here, after every task is done)."""

    def __init__(self, inputs: Inputs, out: Path, cfg: ReportConfig, calib_source: str | None,
                 exporters: dict[str, Any]) -> None:
        self.inputs, self.out, self.cfg, self.calib_source = inputs, out, cfg, calib_source
        self.exporters = exporters  # one per target, for every row of the report
        self.artifacts = cfg.artifacts or out / "artifacts"
        self.cache = ArtifactCache(self.artifacts)
        self.labelled = bool(inputs.eval_labels) and any(lb is not None for lb in inputs.eval_labels or [])
        self.classifier = inputs.model.spec.mode == "classifier"

    # -- the work: tasks ------------------------------------------------------------------------
    def held(self) -> Held:
        inp = self.inputs
        assert inp.eval_images is not None and inp.float_outputs is not None
        return Held(inp.eval_images, inp.eval_labels, inp.float_outputs)

    def row_task(self, target: str, precision: str, quant: PTQConfig | AutoConfig | None, subdir: str) -> Task:
        """The row's export (or the reuse of the artifact an earlier run built from the same recipe)
        and its check; an unbuildable recipe raises EdgeError here, before any work."""
        exporter = self.exporters[target]
        exporter.check(import_them=False)  # the worker imports the tooling; a missing one is a row's note now
        request = exporter.request(self.inputs.model, exporter.recipe(precision, quant), self.inputs.calib,
                                   self.calib_source)
        dest = self.artifacts / subdir
        artifact = dest / exporter.filename(request.model, precision)
        manifest = self.cache.reusable(artifact, request.key()) if self.cfg.reuse else None
        if manifest is not None:
            say(f"{target} {precision}: reusing {artifact} (same recipe)")
        cost = REUSE_COST if manifest is not None else exporter.build_cost.get(precision, 1.0)
        return Task(f"{target} {precision}", export_and_check, (exporter, request, dest, manifest, self.held()),
                    cost)

    def qat_task(self, target: str, ckpt: Path, subdir: str) -> Task:
        """The int8 row of a QAT checkpoint (exported afresh: the checkpoint is the recipe)."""
        from edge.qat import load_qat_program

        exporter = self.exporters[target]
        exporter.check(import_them=False)
        recipe = exporter.recipe("int8", qat=load_qat_program(ckpt, self.inputs.model, exporter.name))
        request = exporter.request(self.inputs.model, recipe, self.inputs.calib)
        return Task(f"{target} int8 (qat)", export_and_check,
                    (exporter, request, self.artifacts / subdir, None, self.held()))

    def sensitivity_task(self, quantizer: str, qcfg: PTQConfig) -> Task:
        inp = self.inputs
        return Task(f"sensitivity ({quantizer})", _sensitivity,
                    (inp.model, inp.calib, inp.eval_images, inp.float_outputs, quantizer, qcfg), SENSITIVITY_COST)

    def rows(self, specs: list[tuple[str, str, str]], tasks: list[Task | EdgeError], answers: list[Any],
             ) -> list[dict[str, Any]]:
        """The rows of ``specs`` (target, precision, method) from their tasks' answers, each timed
        now (a recipe that failed before any work is a row with the reason)."""
        rows, done = [], iter(answers)
        for i, ((target, precision, method), task) in enumerate(zip(specs, tasks, strict=True), 1):
            row = empty_row(target, precision, method)
            if isinstance(task, EdgeError):
                add_note(row, f"not exported: {first_line(task)}")
            else:
                say(f"[{i}/{len(specs)}] timing {target} {precision}" + ("" if method in ("float", "ptq")
                                                                         else f" ({method})"))
                self.finish(row, next(done))
            rows.append(row)
        return rows

    def finish(self, row: dict[str, Any], judged: Judged | Crashed) -> None:
        if isinstance(judged, Crashed):
            add_note(row, f"not exported: {judged.reason}")
            return
        built = judged.built
        if built.error is not None:
            add_note(row, f"not exported: {first_line(built.error)}")
            return
        assert built.artifact is not None and built.manifest is not None and judged.verification is not None
        if not judged.reused and self.cfg.reuse and row["method"] != "qat":
            self.cache.record(built.artifact, judged.key)
        m = built.manifest
        row.update(artifact=str(built.artifact), size_bytes=m["size_bytes"], export_s=m["export_seconds"],
                   reused=judged.reused, delegation=m.get("delegation"))
        if "auto" in m:  # the float units the accuracy-controlled mode chose, and why
            row["auto"] = m["auto"]
            add_note(row, f"kept float: {', '.join(m['auto']['kept_float']) or 'nothing'} "
                          f"({100 * m['auto']['float_mac_share']:.1f}% of the MACs)")
        self._evaluate(row, judged.verification)
        if "auto" in row and row["agreement_top1"] is not None:
            target, got = row["auto"]["target_agreement"], row["agreement_top1"]
            row["auto"]["held_out_agreement"] = got
            add_note(row, f"target agreement {target:g} {'met' if got >= target else 'MISSED'} on the held-out images")
        self._latency(row, built.artifact)

    # -- rows ---------------------------------------------------------------------------------
    def float_row(self) -> dict[str, Any]:
        """The reference: float PyTorch (eager) on the same images and the same threads."""
        from edge.metrics import topk_accuracy

        row = empty_row("pytorch", "fp32", "float")
        row.update(artifact=None, measured=True, agreement_top1=1.0 if self.classifier else None,
                   kl=0.0 if self.classifier else None)
        fl = self.inputs.float_outputs
        assert fl is not None
        if self.classifier and self.labelled:
            labels = self.inputs.eval_labels or []
            row["top1"] = topk_accuracy(fl[0], labels, 1)
            row["top5"] = topk_accuracy(fl[0], labels, min(5, fl[0].shape[1]))
        add_note(row, "the reference every other row is compared with")
        self._accuracy_note(row)
        sess = runtime_for("pytorch").load(self.inputs.model.module, self.cfg.threads)
        row["latency_ms"] = self._time(sess, "pytorch fp32")
        return row

    def _evaluate(self, row: dict[str, Any], ver: Verification) -> None:
        vf = ver.vs_float
        row.update(top1=vf["top1"], top5=vf["top5"], agreement_top1=vf["agreement_top1"], kl=vf["kl"],
                   logit_sqnr_db=finite(vf["sqnr_db"]), max_abs_diff=vf["max_abs_diff"], measured=ver.measured,
                   image_sqnr_db_median=finite(vf.get("image_sqnr_db_median")),
                   error_share_worst_1pct=vf.get("error_share_worst_1pct"))
        if vf["sqnr_db"] is not None and row["logit_sqnr_db"] is None:
            add_note(row, "output identical to float (SQNR infinite)")
        for note in ver.notes:
            add_note(row, note)
        if ver.reference_vs_float is not None and ver.vs_reference is not None:
            q, c = ver.reference_vs_float, ver.vs_reference
            # stage attribution: quantization alone (fake-quant PyTorch vs float) beside conversion +
            # runtime (artifact vs the program it was converted from)
            row["stages"] = {
                "quantization": {"top1": q["top1"], "agreement_top1": q["agreement_top1"],
                                 "logit_sqnr_db": finite(q["sqnr_db"])},
                "conversion_runtime": {"agreement_top1": c["agreement_top1"], "logit_sqnr_db": finite(c["sqnr_db"])},
            }
        self._accuracy_note(row)

    def _accuracy_note(self, row: dict[str, Any]) -> None:
        if not self.classifier:
            add_note(row, f"{self.inputs.model.spec.mode} model: no top-1/top-5 (outputs compared by SQNR)")
        elif not self.labelled:
            add_note(row, "images have no labels: top-1/top-5 not measured (agreement with float is)")

    def _latency(self, row: dict[str, Any], artifact: Path) -> None:
        runtime = runtime_for(artifact)
        reason = runtime.unavailable_reason()
        if reason:
            add_note(row, f"latency not measured: {reason}")
            return
        sess = runtime.load(artifact, threads=self.cfg.threads)
        row["latency_ms"] = self._time(sess, f"{row['target']} {row['precision']}")
        row["runtime"] = {"name": runtime.name, "version": runtime.version()}

    def _time(self, session: Any, desc: str) -> dict[str, Any]:
        images = self.inputs.eval_images
        assert images is not None
        lat = latency(session, images[:1], self.cfg.runs, self.cfg.warmup, self.cfg.threads, desc=f"timing {desc}")
        return {k: lat[k] for k in ("p50", "p90", "min", "runs", "threads")}


def _sensitivity(*args: Any, threads: int) -> list[dict[str, Any]]:
    """layer_sensitivity as a task (it runs on the threads of the process it runs in)."""
    return layer_sensitivity(*args)


def _tasks(run: ReportRun, jobs: list[Job]) -> list[Task | EdgeError]:
    out: list[Task | EdgeError] = []
    for target, precision, quant, subdir in jobs:
        try:
            out.append(run.row_task(target, precision, quant, subdir))
        except EdgeError as exc:
            out.append(exc)
    return out


def _quantizers(exporters: dict[str, Any]) -> dict[str, list[str]]:
    """PT2E quantizer name -> the targets that use it (a converter that calibrates itself has none)."""
    out: dict[str, list[str]] = {}
    for t, exporter in exporters.items():
        if exporter.quantizer is not None and "int8" in exporter.quantized_precisions:
            out.setdefault(exporter.quantizer, []).append(t)
    return out


def _versions() -> tuple[str, ...]:
    """The packages the manifests of every registered target record, once each."""
    from exporters import exporter_class, targets

    return tuple(dict.fromkeys(("torch", "timm", *(v for t in targets() for v in exporter_class(t).versions))))


def run_report(spec: ModelSpec, calib: str | None, data: str | None, out: Path, cfg: ReportConfig,
               classes: Path | None = None, device_results: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    from exporters import get_exporter, targets

    t_start = time.perf_counter()
    if not cfg.targets:
        cfg = dataclasses.replace(cfg, targets=tuple(targets()))
    exporters = {t: get_exporter(t) for t in cfg.targets}  # unknown target -> EdgeError now
    check_spec(spec)  # the cheap checks, before heavy imports; the folder is made after loading
    at_least("--eval-size", cfg.eval_size, 1)
    image_args({"--calib": calib, "--data": data}, classes)
    for ckpt in cfg.qat:
        input_file(ckpt, "QAT checkpoint")
    output_folder(out)
    if cfg.artifacts is not None:
        output_folder(cfg.artifacts)
    unknown = [p for p in cfg.precisions if not any(p in e.precisions for e in exporters.values())]
    if unknown:
        raise EdgeError(f"no target exports precision {', '.join(unknown)} "
                        f"(offered: {', '.join(sorted({p for e in exporters.values() for p in e.precisions}))})")
    quantized = any(p in e.quantized_precisions for e in exporters.values() for p in cfg.precisions)
    if (quantized or cfg.qat or cfg.recalibrate_bn) and not calib:
        raise EdgeError(f"--calib DIR is needed for {'int8' if quantized or cfg.qat else '--recalibrate-bn'}")
    qat_jobs: list[tuple[Path, str]] = []
    if cfg.qat:  # a bad checkpoint fails before any work
        from quantize.qat import read_checkpoint

        qat_jobs = [(ckpt, str(read_checkpoint(ckpt)["target"])) for ckpt in cfg.qat]
        quantized = True
    inputs = load_inputs(spec, calib, cfg.quant.calib_size, data, cfg.eval_size, classes, cfg.recalibrate_bn,
                         require_calib=quantized)
    if inputs.eval_images is None or len(inputs.eval_images) == 0:
        raise EdgeError("no held-out images to evaluate on: give --data DIR (or --calib with more images "
                        "than --calib-size)")
    ensure_writable_dir(out)
    if cfg.artifacts is not None:
        ensure_writable_dir(cfg.artifacts)
    qat_only = {t: get_exporter(t) for _, t in qat_jobs if t not in exporters}  # rows, not sensitivity
    run = ReportRun(inputs, out, cfg, calib, {**exporters, **qat_only})
    skipped = [f"{t} {p}" for t in cfg.targets for p in cfg.precisions if p not in exporters[t].precisions]
    for s in skipped:
        say(f"{s}: not a precision this target exports; skipped")
    stages = {"inputs": time.perf_counter() - t_start}
    jobs: list[Job] = [(t, p, cfg.quant if p in exporters[t].quantized_precisions else None, method_of(p))
                       for t in cfg.targets for p in cfg.precisions if p in exporters[t].precisions]
    users = _quantizers(exporters)
    analyses = []
    if cfg.sensitivity and "int8" in cfg.precisions:
        analyses = [(q, exporters[ts[0]].resolve_config(cfg.quant)) for q, ts in users.items()]
    tasks = _tasks(run, jobs)
    extra = [run.sensitivity_task(q, qcfg) for q, qcfg in analyses]
    work = [t for t in tasks if isinstance(t, Task)] + extra
    workers = max(1, min(cfg.workers, len(work)))
    # on worker processes a converter's native abort is that row's failure, not the report's
    answers = run_tasks(work, workers, cfg.threads, crashes=workers > 1)
    stages["work"] = time.perf_counter() - t_start - sum(stages.values())
    say(f"[float] timing PyTorch on {len(inputs.eval_images)} images")
    rows = [run.float_row()] + run.rows([(t, p, method_of(p)) for t, p, _, _ in jobs], tasks, answers)
    stages["timing"] = time.perf_counter() - t_start - sum(stages.values())
    layers = answers[len(answers) - len(extra):]
    sensitivity = {q: {"targets": users[q], "layers": lay} for (q, _), lay in zip(analyses, layers, strict=True)
                   if not isinstance(lay, Crashed)}
    later: list[Later] = []
    for ckpt, target in qat_jobs:  # exported afresh, after the rest (they share no work)
        try:
            later.append(((target, "int8", "qat"), run.qat_task(target, ckpt, "qat"), None))
        except EdgeError as exc:
            later.append(((target, "int8", "qat"), exc, None))
    if cfg.keep_float_k and sensitivity:
        later += _keep_float_tasks(run, cfg, sensitivity)
    if cfg.target_agreement is not None and "int8" in cfg.precisions:
        later += _auto_tasks(run, cfg, users)
    if "int8" in cfg.precisions:
        later += _recipe_tasks(run, cfg, skipped)
    if later:
        todo = [t for _, t, _ in later]
        done = run_tasks([t for t in todo if isinstance(t, Task)], 1, cfg.threads)
        rows += run.rows([spec for spec, _, _ in later], todo, done)
        for row, (_, _, note) in zip(rows[-len(later):], later, strict=True):
            if note:
                add_note(row, note)
    stages["qat_and_keep_float"] = time.perf_counter() - t_start - sum(stages.values())
    if device_results:
        from edge.report.devices import device_rows

        rows += device_rows(device_results, rows)
    model = inputs.model
    report = {
        "schema": SCHEMA,
        "model": {"name": spec.name, "mode": spec.mode, "input_shape": list(model.input_shape),
                  "num_classes": model.num_classes, "preprocessing": model.preprocessing()},
        "weights": {"source": model.weights_source, "sha256": model.weights_sha256, "notes": model.notes},
        "data": {"path": data or calib, "images": len(inputs.eval_images), "labelled": run.labelled,
                 "calibration": {"path": calib, "images": None if inputs.calib is None else len(inputs.calib)},
                 "skipped_files": inputs.skipped},
        "host": host_facts(),
        "versions": package_versions(_versions()),
        "settings": {"threads": cfg.threads, "runs": cfg.runs, "warmup": cfg.warmup, "batch": 1,
                     "quant": dataclasses.asdict(cfg.quant)},
        "rows": rows,
        "sensitivity": sensitivity,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t_start, 1),
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
        "workers": workers,
    }
    return report


def _keep_float_tasks(run: ReportRun, cfg: ReportConfig, sensitivity: dict[str, Any]) -> list[Later]:
    """The K most sensitive layers of each quantizer kept float: the accuracy/latency trade-off."""
    from quantize.ptq import subtree_patterns

    out: list[Later] = []
    for info in sensitivity.values():
        worst = [r["layer"] for r in info["layers"][: cfg.keep_float_k]]
        q = dataclasses.replace(cfg.quant, keep_float=cfg.quant.keep_float + subtree_patterns(worst))
        method = f"ptq+float{cfg.keep_float_k}"
        for target in info["targets"]:
            spec, note = (target, "int8", method), f"kept float: {', '.join(worst)}"
            try:
                task = run.row_task(target, "int8", q, f"ptq-float{cfg.keep_float_k}")
                out.append((spec, dataclasses.replace(task, label=f"{target} int8, {note}"), note))
            except EdgeError as exc:
                out.append((spec, exc, note))
    return out


def _auto_tasks(run: ReportRun, cfg: ReportConfig, users: dict[str, list[str]]) -> list[Later]:
    """One accuracy-controlled int8 row per target with a PT2E quantizer (quantize/auto.py)."""
    from edge.pipeline import auto_config

    auto = auto_config(run.inputs.model.spec, cfg.quant, cfg.target_agreement or 0.0, cfg.auto_search_images)
    out: list[Later] = []
    for target in (t for ts in users.values() for t in ts):
        spec = (target, "int8", "auto")
        try:
            out.append((spec, run.row_task(target, "int8", auto, "auto"), None))
        except EdgeError as exc:
            out.append((spec, exc, None))
    return out


def _recipe_tasks(run: ReportRun, cfg: ReportConfig, skipped: list[str]) -> list[Later]:
    """One int8 row per extra recipe (quantize.RECIPES) and target that can build it; a target that
    cannot is listed in the report's ``skipped`` with its reason."""
    from quantize import recipe_config

    out: list[Later] = []
    for name in cfg.recipes:
        quant = recipe_config(name, cfg.quant)
        for target in cfg.targets:
            if "int8" not in run.exporters[target].quantized_precisions:
                continue
            try:
                out.append(((target, "int8", name), run.row_task(target, "int8", quant, name), None))
            except EdgeError as exc:
                skipped.append(f"{target} int8 ({name}): {first_line(exc)}")
                say(f"{skipped[-1]}; skipped")
    return out
