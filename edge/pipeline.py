"""Shared steps of `edge export` and `edge demo`: load model and images once, then export and verify
each (target, precision) against the same float outputs on the same held-out images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.data import load_batch, open_image_set
from edge.errors import EdgeError
from edge.harness import run_torch, verify_artifact
from edge.models import LoadedModel, ModelSpec, load_model, recalibrate_batchnorm
from edge.progress import say


@dataclass
class Inputs:
    """The model plus the calibration and held-out images every artifact is judged on."""

    model: LoadedModel
    calib: Any  # torch.Tensor NCHW or None
    eval_images: np.ndarray | None
    eval_labels: list[int | None] | None
    float_outputs: list[np.ndarray] | None
    skipped: int = 0  # unreadable image files passed over


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
    model = load_model(spec)
    for note in model.notes:
        say(f"note: {note}")
    transform = model.transform()
    calib_imgs, eval_set, skipped = None, None, 0
    if calib:
        cset = open_image_set(calib, classes)
        calib_part, rest = cset.split(min(calib_size, len(cset.items)), spec.seed)
        cb = load_batch(calib_part.items, transform, progress="loading calibration images")
        skipped += len(cb.skipped)
        if cb.skipped:
            say(f"skipped {len(cb.skipped)} unreadable calibration file(s), e.g. {cb.skipped[0][0].name}")
        if require_calib and len(cb.images) < calib_size:
            raise EdgeError(f"--calib-size {calib_size} asked for, but {calib} has only "
                            f"{len(cb.images)} readable image(s) to calibrate on")
        calib_imgs = cb.images
        eval_set = rest
    if eval_data:
        eval_set, _ = open_image_set(eval_data, classes).split(eval_size * 2, spec.seed + 1)  # seeded sample
    if recalibrate_bn and calib_imgs is not None:
        recalibrate_batchnorm(model, calib_imgs)
        model.notes.append(f"BatchNorm statistics re-estimated on {len(calib_imgs)} calibration images")
        say(model.notes[-1])
    images = labels = fl = None
    if eval_set is not None and eval_set.items:
        eb = load_batch(eval_set.items, transform, limit=eval_size, progress="loading held-out images")
        skipped += len(eb.skipped)
        if eb.skipped:
            say(f"skipped {len(eb.skipped)} unreadable held-out file(s)")
        images = eb.images.numpy().astype(np.float32)
        labels = eb.labels if eval_set.labelled else None
        fl = run_torch(model.module, images)
    return Inputs(model, calib_imgs, images, labels, fl, skipped)


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
    result = exporter.export(inputs.model, precision, out, inputs.calib, quant, qat=qat)
    say(f"wrote {result.artifact} ({result.manifest['size_bytes'] / 1e6:.2f} MB) in {result.seconds:.1f} s")
    parity = None
    if inputs.eval_images is not None:
        ver = verify_artifact(inputs.model, result.artifact, result.reference, inputs.eval_images,
                              inputs.eval_labels, inputs.float_outputs, threads, runtime_options)
        if not ver.measured and precision in ("fp16", "w8"):
            ver.notes.append(f"{precision}: Core ML's float16 arithmetic is not simulated (the program ran in float32)")
        parity = {"images": len(inputs.eval_images), "vs_float": ver.vs_float,
                  "vs_quantized_program": ver.vs_reference,
                  "quantized_program_vs_float": ver.reference_vs_float, "measured": ver.measured, "notes": ver.notes}
    else:
        say("no held-out images (give --calib with more images than --calib-size, or --eval): parity not checked")
    return {"artifact": str(result.artifact), "manifest": str(result.manifest_path), "target": target,
            "precision": precision, "export_seconds": round(result.seconds, 1),
            "size_bytes": result.manifest["size_bytes"], "delegation": result.manifest.get("delegation"),
            "skipped_images": inputs.skipped, "spec": result.manifest.get("spec"),
            "parity": parity}
