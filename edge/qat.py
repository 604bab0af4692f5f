"""The QAT job (`edge qat`, `edge export --qat`, `edge report --qat`): pick the target's scheme from
its exporter, decode images, train, evaluate, checkpoint — and turn a checkpoint back into the
program the target's exporter converts. The mechanics it drives live in quantize/qat.py."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from edge.data import skipped_note
from edge.errors import EdgeError
from edge.models import ModelSpec, check_spec
from edge.progress import say
from edge.validate import at_least, image_args, input_file, output_file
from quantize.config import PTQConfig, QATConfig
from quantize.ptq import check_keep_float, float_patterns
from quantize.qat import (
    QATProgram,
    TrainState,
    adapted_float_module,
    check_checkpoint,
    config_from_dict,
    convert_qat,
    distributed,
    init_ranges,
    load_state,
    new_state,
    prepare_qat,
    read_checkpoint,
    save_checkpoint,
    set_phase,
    to_inference,
    train,
)


def qat_targets() -> list[str]:
    """The targets whose exporter names a QAT scheme."""
    from exporters import exporter_class, targets

    return [t for t in targets() if exporter_class(t).qat_quantizer is not None]


def target_scheme(target: str, module: Any, ptq: PTQConfig) -> tuple[str, PTQConfig]:
    """The quantizer QAT uses for ``target`` and the PTQ knobs as that target applies them
    (TFLite: as its exporter applies them — head float by default, like its PTQ)."""
    from exporters import get_exporter

    if target not in qat_targets():
        raise EdgeError(f"QAT supports targets {', '.join(qat_targets())}, not {target!r}")
    exporter = get_exporter(target)
    exporter.validate("int8", ptq)
    eff = exporter.effective_config(ptq)
    assert exporter.qat_quantizer is not None
    return exporter.qat_quantizer, dataclasses.replace(eff, keep_float=float_patterns(module, eff))


def restore(blob: dict[str, Any], model: Any) -> tuple[Any, QATConfig, str]:
    """Rebuild the fake-quant model of a checkpoint and load its trained state."""
    config = config_from_dict(blob["config"])
    quantizer, ptq = target_scheme(blob["target"], model.module, config.ptq)
    prepared = prepare_qat(model.module, model.example_input(2), quantizer, ptq)
    load_state(prepared, blob, model.spec.name)
    return prepared, config, quantizer


def load_qat_program(ckpt: Path, model: Any, target: str | None = None) -> QATProgram:
    """The exportable program of a QAT checkpoint, checked against ``model`` (and ``target``)."""
    from edge.io import sha256_path
    from exporters import get_exporter

    blob = read_checkpoint(ckpt)
    check_checkpoint(blob, ckpt, model, target)
    prepared, config, quantizer = restore(blob, model)
    exporter = get_exporter(blob["target"])
    # before convert: convert_pt2e folds BN into the conv weights in place, so the float module
    # read afterwards would apply BatchNorm twice
    adapted = adapted_float_module(model.module, prepared) if exporter.calibrates_itself else None
    converted = convert_qat(prepared)
    program = adapted if adapted is not None else converted
    # recorded as the target applies it (TFLite: head int8 too), as PTQ manifests are
    applied = dataclasses.replace(config, ptq=exporter.effective_config(config.ptq))
    return QATProgram(program, converted, applied, blob["target"], quantizer, int(blob["step"]),
                      sha256_path(ckpt))


def check_qat(spec: ModelSpec, data: str, out: Path, classes: Path | None = None, resume: bool = False,
              threads: int | None = None, save_every: int = 50, until: int | None = None) -> None:
    """What `edge qat` can check before torch is imported or the model loaded: the model, the
    images, and a checkpoint path that can be written (or, with ``resume``, read)."""
    check_spec(spec)
    at_least("--threads", threads, 1)
    at_least("--save-every", save_every, 0)  # 0: only at the end
    at_least("--stop-after", until, 0)
    image_args({"--data": data}, classes)
    output_file(out, "checkpoint file")
    if resume:
        input_file(out, "--resume: checkpoint")
    elif out.exists():
        raise EdgeError(f"{out} exists: pass --resume to continue it, or choose another --out")


def run_qat(
    model: Any,
    target: str,
    data: str,
    out: Path,
    config: QATConfig,
    resume: bool = False,
    until: int | None = None,
    save_every: int = 50,
    classes: Path | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``target`` on the images in ``data``; checkpoint to ``out``.

    Held-out images (``config.eval_images``, a seeded sample of ``data``) give the fidelity
    figures at the end: the fake-quant model against float (agreement, SQNR, top-1 if labelled)."""
    import numpy as np
    import torch

    from edge.data import load_batch, open_image_set
    from edge.harness import run_torch
    from edge.metrics import compare

    rank, _world = distributed()
    torch.manual_seed(config.ptq.seed)
    blob = None
    if resume:
        blob = read_checkpoint(out)
        check_checkpoint(blob, out, model, target)
        saved = config_from_dict(blob["config"])
        if saved != config:
            diff = [f"{k}={getattr(saved, k)!r}" for k in dataclasses.asdict(config)
                    if getattr(saved, k) != getattr(config, k)]
            raise EdgeError(f"--resume with other settings than {out} was trained with: it has {', '.join(diff)}")
    elif out.exists():
        raise EdgeError(f"{out} exists: pass --resume to continue it, or choose another --out")
    check_keep_float(model.module, config.ptq.keep_float)
    quantizer, ptq = target_scheme(target, model.module, config.ptq)
    iset = open_image_set(data, classes)
    if len(iset.items) < config.eval_images + 2:
        raise EdgeError(f"{data} has {len(iset.items)} image(s); QAT needs more than the "
                        f"{config.eval_images} held out for evaluation")
    held, rest = iset.split(config.eval_images, config.ptq.seed)
    train_items, _ = rest.split(min(config.train_images, len(rest.items)), config.ptq.seed + 1)
    tb = load_batch(train_items.items, model.transform(), progress="decoding training images")
    if tb.skipped:
        say(skipped_note("training", tb.skipped))
    labels = _labels(iset, tb.labels, model, config)
    say(f"QAT for {target} ({quantizer} quantizer) on {len(tb.images)} images: "
        + ("distillation + cross-entropy (labelled)" if labels is not None else "distillation (no labels used)"))
    teacher = model.module.eval()
    prepared = prepare_qat(model.module, model.example_input(2), quantizer, ptq)
    state = new_state(prepared, config)
    if blob is not None:
        load_state(prepared, blob, model.spec.name)
        state.optimizer.load_state_dict(blob["optimizer_state"])
        state.generator.set_state(blob["generator_state"])
        state.step, state.history = int(blob["step"]), list(blob["history"])
        say(f"resuming {out} at step {state.step} of {config.steps}")
    else:
        init_ranges(prepared, tb.images, config)

    def save(st: TrainState) -> None:
        save_checkpoint(out, model, target, quantizer, config, prepared, st)

    try:
        train(prepared, teacher, tb.images, labels, config, state, until, save, save_every)
    except KeyboardInterrupt:
        if rank == 0 and state.step > 0:
            save(state)
            say(f"interrupted: step {state.step} saved to {out}; --resume continues it")
        raise
    result: dict[str, Any] = {"checkpoint": str(out), "target": target, "quantizer": quantizer,
                              "step": state.step, "steps": config.steps, "train_images": len(tb.images),
                              "labels_used": labels is not None,
                              "loss_first": state.history[0] if state.history else None,
                              "loss_last": state.history[-1] if state.history else None}
    if held.items and rank == 0:
        eb = load_batch(held.items, model.transform(), progress="loading held-out images")
        if eb.skipped:
            say(skipped_note("held-out", eb.skipped))
        imgs = eb.images.numpy().astype(np.float32)
        fake = to_inference(copy.deepcopy(prepared))
        held_labels = eb.labels if iset.labelled else None
        result["held_out"] = compare(run_torch(teacher, imgs), run_torch(fake, imgs), held_labels, True)
        set_phase(prepared, state.step, config)
        h = result["held_out"]
        say(f"QAT model vs float on {len(imgs)} held-out images: top-1 agreement {h['agreement_top1']:.3f}, "
            f"SQNR {h['sqnr_db']:.1f} dB")
    return result


def classes_match(folder: list[str], model: Any) -> bool:
    """A folder's class names index the model's classes: they are the first of its class
    identifiers (ImageNet synsets) or of its labels; a model that names no classes takes any."""
    known = [names for names in (model.class_ids, model.labels) if names]
    return not known or any(folder == list(names)[: len(folder)] for names in known)


def _labels(iset: Any, labels: list[int | None], model: Any, config: QATConfig) -> Any:
    """Labels for cross-entropy, or None (unlabelled folder, or ce_weight 0). Folder classes
    that are not the model's classes are an error, not a silent mislabelling."""
    import torch

    if not iset.labelled or config.ce_weight == 0:
        return None
    n = model.num_classes or 0
    if iset.classes and not classes_match(list(iset.classes), model):
        ours = model.class_ids or model.labels
        raise EdgeError(f"the image folder's classes ({', '.join(iset.classes[:3])}, ...) are not the model's "
                        f"({', '.join(ours[:3])}, ...): use --ce-weight 0 to distil without labels")
    if any(lb is not None and lb >= n for lb in labels):
        raise EdgeError(f"the image folder has labels beyond the model's {n} classes: use --ce-weight 0 "
                        "to distil without labels")
    return torch.tensor([lb if lb is not None else -1 for lb in labels])
