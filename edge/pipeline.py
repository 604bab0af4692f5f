"""The export job (`edge export`) and the steps it shares with the report: load model and images
once, then export and verify each (target, precision) against the same float outputs on the same
held-out images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.data import ImageSet, load_batch, open_image_set, skipped_note
from edge.errors import EdgeError
from edge.harness import run_torch, verify_artifact
from edge.models import LoadedModel, ModelSpec, check_spec, load_model, recalibrate_batchnorm
from edge.progress import say
from edge.validate import at_least, image_args, input_file, output_folder


@dataclass
class Inputs:
    """The model plus the calibration and held-out images every artifact is judged on."""

    model: LoadedModel
    calib: Any  # torch.Tensor NCHW or None
    eval_images: np.ndarray | None
    eval_labels: list[int | None] | None
    float_outputs: list[np.ndarray] | None
    skipped: int = 0  # unreadable image files passed over
    unreadable: list[Path] = field(default_factory=list)  # those files
    calib_source: str | None = None  # where the calibration images came from (part of the recipe key)


def load_inputs(
    spec: ModelSpec,
    calib: str | None,
    calib_size: int,
    eval_data: str | None = None,
    eval_size: int = 32,
    classes: Path | None = None,
    recalibrate_bn: bool = False,
    require_calib: bool = False,
) -> Inputs:
    if calib_size < 1 or eval_size < 1:
        raise EdgeError("--calib-size and --eval-size must be at least 1")
    if (require_calib or recalibrate_bn) and not calib:
        raise EdgeError(f"--calib DIR is needed for {'int8' if require_calib else '--recalibrate-bn'}")
    cset = open_image_set(calib, classes) if calib else None  # listing is cheap: before the model
    eset = open_image_set(eval_data, classes) if eval_data else None
    model = load_model(spec)
    for note in model.notes:
        say(f"note: {note}")
    transform = model.transform()
    calib_imgs: Any = None
    eval_set: ImageSet | None = None
    unreadable: list[Path] = []
    if cset is not None:
        # the seeded order's first readable calib_size images calibrate (an unreadable one is
        # replaced by the next); the images after them are held out
        order, _ = cset.split(len(cset.items), spec.seed)
        cb = load_batch(order.items, transform, limit=calib_size, progress="loading calibration images")
        used = len(cb.paths) + len(cb.skipped)
        unreadable += [p for p, _ in cb.skipped]
        if cb.skipped:
            say(skipped_note("calibration", cb.skipped) + " (replaced by the next readable ones)")
        if require_calib and len(cb.images) < calib_size:
            raise EdgeError(f"--calib-size {calib_size} asked for, but {calib} has only "
                            f"{len(cb.images)} readable image(s) to calibrate on")
        calib_imgs = cb.images
        eval_set = ImageSet(order.source, order.items[used:], order.classes, order.layout)
    if eset is not None:
        eval_set, _ = eset.split(eval_size * 2, spec.seed + 1)  # seeded sample
    if recalibrate_bn and calib_imgs is not None:
        recalibrate_batchnorm(model, calib_imgs)
        model.notes.append(f"BatchNorm statistics re-estimated on {len(calib_imgs)} calibration images")
        say(model.notes[-1])
    images = labels = fl = None
    if eval_set is not None and eval_set.items:
        eb = load_batch(eval_set.items, transform, limit=eval_size, progress="loading held-out images")
        unreadable += [p for p, _ in eb.skipped]
        if eb.skipped:
            say(skipped_note("held-out", eb.skipped))
        images = eb.images.numpy().astype(np.float32)
        labels = eb.labels if eval_set.labelled else None
        fl = run_torch(model.module, images)
    calib_source = calib if calib_imgs is not None else None
    return Inputs(model, calib_imgs, images, labels, fl, len(unreadable), unreadable, calib_source)


def export_and_verify(
    target: str,
    inputs: Inputs,
    precision: str,
    out: Path,
    quant: Any = None,
    threads: int | None = None,
    options: dict[str, str] | None = None,
    runtime_options: dict[str, str] | None = None,
    qat: Any = None,
) -> dict[str, Any]:
    """Export one artifact, run it on its runtime, and return the parity report (a plain dict).
    ``qat`` (quantize.qat.QATProgram): export from the QAT model, which becomes the reference."""
    from exporters import get_exporter

    exporter = get_exporter(target, **(options or {}))
    return build_and_verify(exporter, exporter.recipe(precision, quant, qat), inputs, out, threads, runtime_options)


def build_or_reuse(exporter: Any, request: Any, dest: Path,
                   cache: Any = None) -> tuple[Path, dict[str, Any], Any, bool]:
    """Export ``request`` into ``dest``, or reuse the artifact there when ``cache``
    (edge.report.cache.ArtifactCache) records that it was built from the same recipe.
    Returns the artifact, its manifest, the program it must reproduce, and whether it was reused."""
    artifact = dest / exporter.filename(request.model, request.recipe.precision)
    key = request.key()
    manifest = cache.reusable(artifact, key) if cache is not None else None
    if manifest is not None:
        say(f"{exporter.name} {request.recipe.precision}: reusing {artifact} (same recipe)")
        return artifact, manifest, exporter.reference(request), True
    result = exporter.build(request, dest)
    say(f"wrote {result.artifact} ({result.manifest['size_bytes'] / 1e6:.2f} MB) in {result.seconds:.1f} s")
    if cache is not None:
        cache.record(result.artifact, key)
    return result.artifact, result.manifest, result.reference, False


def build_and_verify(exporter: Any, recipe: Any, inputs: Inputs, out: Path, threads: int | None = None,
                     runtime_options: dict[str, str] | None = None, cache: Any = None) -> dict[str, Any]:
    """Build ``recipe`` (exporters.base.Recipe) with ``exporter`` (or reuse it: ``cache``) and check
    the artifact on its runtime."""
    from edge.manifest import manifest_path

    precision = recipe.precision
    request = exporter.request(inputs.model, recipe, inputs.calib, inputs.calib_source)
    artifact, manifest, reference, reused = build_or_reuse(exporter, request, out, cache)
    parity = None
    if inputs.eval_images is not None:
        ver = verify_artifact(inputs.model, artifact, reference, inputs.eval_images,
                              inputs.eval_labels, inputs.float_outputs, threads, runtime_options)
        if not ver.measured and precision in ("fp16", "w8"):
            ver.notes.append(f"{precision}: Core ML's float16 arithmetic is not simulated (the program ran in float32)")
        parity = {"images": len(inputs.eval_images), "vs_float": ver.vs_float,
                  "vs_quantized_program": ver.vs_reference,
                  "quantized_program_vs_float": ver.reference_vs_float, "measured": ver.measured, "notes": ver.notes}
    else:
        say("no held-out images (give --calib with more images than --calib-size, or --eval): parity not checked")
    return {"artifact": str(artifact), "manifest": str(manifest_path(artifact)), "target": exporter.name,
            "precision": precision, "export_seconds": round(float(manifest["export_seconds"]), 1), "reused": reused,
            "size_bytes": manifest["size_bytes"], "delegation": manifest.get("delegation"),
            "skipped_images": inputs.skipped, "spec": manifest.get("spec"), "parity": parity}


@dataclass(frozen=True)
class ExportJob:
    """What `edge export <target>` asks for: one artifact, checked on its runtime."""

    spec: ModelSpec
    target: str
    precision: str
    out: Path
    options: dict[str, str]
    runtime_options: dict[str, str] | None = None
    calib: str | None = None
    calib_size: int = 128
    eval_data: str | None = None
    eval_size: int = 32
    classes: Path | None = None
    recalibrate_bn: bool = False
    threads: int | None = None
    # int8 knobs (PTQ); with ``qat`` they were fixed when training
    observer: str | None = None
    percentile: float = 99.99
    search_images: int = 64
    keep_float: tuple[str, ...] = ()
    int8_head: bool = False
    qat: Path | None = None  # an `edge qat` checkpoint to export int8 from
    activations: str = "static"  # PTQConfig.activations
    float_depthwise: bool = False  # PTQConfig.float_depthwise
    target_agreement: float | None = None  # accuracy-controlled int8 (quantize/auto.py)
    auto_search_images: int = 128


# the artifact must agree with the QAT model it came from on this share of held-out top-1 (docs/qat.md)
QAT_DRIFT_AGREEMENT = 0.995


def check_job(job: ExportJob) -> None:
    """What can be checked without a heavy import or a file written: bounds, the model name, the
    weights, image and class-list files, the output folder (created only when the artifact is)."""
    check_spec(job.spec)
    at_least("--calib-size", job.calib_size, 1)
    at_least("--eval-size", job.eval_size, 1)
    at_least("--threads", job.threads, 1)
    image_args({"--calib": job.calib, "--eval": job.eval_data}, job.classes)
    if job.qat is not None:
        input_file(job.qat, "QAT checkpoint")
    output_folder(job.out)


def run_export(job: ExportJob) -> dict[str, Any]:
    """Validate the job, the recipe and the tooling before minutes of work, then export and verify."""
    from exporters import get_exporter
    from quantize import PTQConfig
    from quantize.ptq import check_keep_float

    exporter = get_exporter(job.target, **job.options)
    check_job(job)
    quantized = job.precision in exporter.quantized_precisions
    recipe = None
    if job.qat is not None:
        if not quantized:
            raise EdgeError(f"--qat exports int8; pass --precision {exporter.quantized_precisions[0]}")
        if (job.observer is not None or job.keep_float or job.int8_head or job.target_agreement is not None
                or job.activations != "static" or job.float_depthwise):
            raise EdgeError("--observer/--keep-float/--int8-head/--target-agreement/--activations/--float-depthwise "
                            "are set when training (`edge qat`), not with --qat")
    else:
        qcfg = PTQConfig(calib_size=job.calib_size, observer=job.observer, percentile=job.percentile,
                         search_images=job.search_images, keep_float=job.keep_float, float_head=not job.int8_head,
                         seed=job.spec.seed, activations=job.activations,
                         float_depthwise=job.float_depthwise) if quantized else None
        if job.activations != "static" and qcfg is None:
            raise EdgeError(f"--activations {job.activations} applies to int8 (--precision int8)")
        if job.float_depthwise and qcfg is None:
            raise EdgeError("--float-depthwise applies to int8 (--precision int8)")
        if job.target_agreement is not None:
            qcfg = auto_config(job.spec, qcfg, job.target_agreement, job.auto_search_images)
        recipe = exporter.recipe(job.precision, qcfg)
    needs_calib = recipe.quantized if recipe is not None else exporter.calibrates_itself
    if (needs_calib or job.recalibrate_bn) and not job.calib:
        raise EdgeError(f"--calib DIR is needed for {'int8' if needs_calib else '--recalibrate-bn'}")
    exporter.check()
    inputs = load_inputs(job.spec, job.calib, job.calib_size, job.eval_data, job.eval_size, job.classes,
                         job.recalibrate_bn, require_calib=needs_calib)
    if recipe is not None and recipe.quantized:
        check_keep_float(inputs.model.module, job.keep_float)
    if job.qat is not None:
        from edge.qat import load_qat_program

        recipe = exporter.recipe(job.precision, qat=load_qat_program(job.qat, inputs.model, job.target))
    assert recipe is not None
    report = build_and_verify(exporter, recipe, inputs, job.out, job.threads, job.runtime_options)
    if job.qat is not None:
        par = report["parity"]
        vs_qat = par["vs_quantized_program"] if par else None
        agree = vs_qat["agreement_top1"] if vs_qat else None
        report["method"] = "qat"
        report["qat_drift"] = agree is not None and agree < QAT_DRIFT_AGREEMENT
    if job.target_agreement is not None:
        report["method"] = "auto"
        report["auto"] = auto_outcome(report)
    return report


def auto_config(spec: ModelSpec, ptq: Any, target: float, search_images: int) -> Any:
    """The accuracy-controlled config, checked before any work: top-1 agreement needs class logits,
    and the search images are calibration images."""
    from quantize import AutoConfig

    if ptq is None:
        raise EdgeError("--target-agreement applies to int8 (--precision int8)")
    auto = AutoConfig(ptq=ptq, target_agreement=target, search_images=search_images)  # checks its own values
    if spec.mode != "classifier":
        raise EdgeError(f"--target-agreement judges top-1 agreement, which a {spec.mode} model has not "
                        "(its outputs are compared by SQNR): use it with --mode classifier")
    if search_images > ptq.calib_size:
        raise EdgeError(f"--auto-search-images {search_images} is more than the {ptq.calib_size} calibration "
                        "images it is taken from (--calib-size)")
    return auto


def auto_missed(report: dict[str, Any]) -> str | None:
    """The one line that says an accuracy-controlled export missed its target on the held-out
    images (None when it met it, or when there were no held-out images to judge it on)."""
    auto = report.get("auto")
    got = auto.get("held_out_agreement") if auto else None
    if auto is None or got is None or got >= auto["target_agreement"]:
        return None
    return (f"--target-agreement {auto['target_agreement']:g} met on the search images ({auto['agreement']:.3f}) "
            f"but not on the {report['parity']['images']} held-out images ({got:.3f}): give more "
            "--auto-search-images (and --calib-size) or a lower target")


def auto_outcome(report: dict[str, Any]) -> dict[str, Any]:
    """The auto mode's choice (from the manifest) beside the held-out agreement that re-checks it."""
    import json

    manifest = json.loads(Path(report["manifest"]).read_text())
    parity = report.get("parity") or {}
    held = (parity.get("vs_float") or {}).get("agreement_top1")
    return {**manifest.get("auto", {}), "held_out_agreement": held}
