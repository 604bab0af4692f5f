"""Quantization-aware training (PT2E), label-free by default: the float model teaches its own
fake-quant copy (KL on temperature-softened logits), so any folder of unlabelled images works.

Why the target's own quantizer: the int8 artifact must reproduce the model that was trained, so
QAT inserts exactly the fake-quant points and schemes the target's lowering will honour —
XNNPACK's for ExecuTorch, Core ML's for Core ML. TFLite's converter calibrates its own int8
ranges (onnx2tf drops the Q/DQ pairs of a QDQ ONNX, docs/qat.md), so for TFLite QAT trains with
XNNPACK's scheme (int8 asymmetric activations, symmetric per-channel weights: TFLite's) on every
layer, and the converter re-calibrates the QAT-adapted float weights.

A checkpoint (``torch.save``, read back with ``weights_only=True``) records the model name and
float-weights sha256, the target and quantizer, the config and the step, with the fake-quant
model's and the optimizer's state and the data generator's state, so that a resumed run is the
same as an uninterrupted one and a checkpoint for another model or target is refused.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge._deps import require
from edge.errors import EdgeError
from edge.progress import bar, say
from quantize.config import PTQConfig, QATConfig
from quantize.ptq import export_for_quantization, float_patterns
from quantize.quantizers import make_quantizer

FORMAT = "edge.qat/1"
TARGETS = ("executorch", "coreml", "tflite")


# ---------------------------------------------------------------------------- the model to train


def target_scheme(target: str, module: Any, ptq: PTQConfig) -> tuple[str, PTQConfig]:
    """The quantizer QAT uses for ``target`` and the PTQ knobs as that target applies them
    (TFLite: as its exporter applies them — head float by default, like its PTQ)."""
    from exporters import get_exporter

    if target not in TARGETS:
        raise EdgeError(f"QAT supports targets {', '.join(TARGETS)}, not {target!r}")
    exporter = get_exporter(target)
    exporter.validate("int8", ptq)
    eff = exporter.effective_config(ptq)
    return exporter.quantizer or "xnnpack", dataclasses.replace(eff, keep_float=float_patterns(module, eff))


def prepare_qat(module: Any, example: Any, quantizer: str, ptq: PTQConfig) -> Any:
    """Export a train-mode copy of ``module`` and insert the quantizer's fake-quant (conv + BN
    fused QAT-style, so BN folds into the int8 weights at convert). Deterministic: the same
    module gives the same graph and fake-quant names, which is what lets a checkpoint load."""
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "quantization-aware training")
    gm = export_for_quantization(copy.deepcopy(module).train(), example).module()
    drop_batchnorm_counters(gm)
    return pt2e.prepare_qat_pt2e(gm, make_quantizer(quantizer, ptq, is_qat=True))


_BN_COUNTER = "num_batches_tracked"  # a BatchNorm buffer the train-mode export increments in place


def drop_batchnorm_counters(gm: Any) -> int:
    """Remove the train-mode export's in-place ``num_batches_tracked += 1`` of every BatchNorm.

    Why: the counter only matters with ``momentum=None``; left in, a quantizer that annotates
    every add (Core ML's) puts a fake-quant on the int64 counter, and the converted program
    mutates buffers, which coremltools refuses ("State model is supported only >= iOS18")."""
    import torch

    dropped = 0
    for node in list(gm.graph.nodes):
        if (node.op == "call_function" and node.target is torch.ops.aten.add_.Tensor and not node.users
                and node.args[0].op == "get_attr" and str(node.args[0].target).endswith(_BN_COUNTER)):
            gm.graph.erase_node(node)
            dropped += 1
    if dropped:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return dropped


def set_phase(prepared: Any, step: int, config: QATConfig) -> None:
    """BatchNorm statistics and fake-quant ranges as they are at ``step`` (frozen from the
    configured steps on). Exported graphs ignore .train()/.eval(): torchao rewrites the BN ops."""
    from torchao.quantization.pt2e import (
        disable_observer,
        enable_observer,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )

    if step >= config.freeze_bn_after:
        move_exported_model_to_eval(prepared)
    else:
        move_exported_model_to_train(prepared)
    prepared.apply(disable_observer if step >= config.freeze_observers_after else enable_observer)


def to_inference(prepared: Any) -> Any:
    """BN on running statistics, observers off: the fake-quant model as it will be deployed."""
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval

    move_exported_model_to_eval(prepared)
    prepared.apply(disable_observer)
    return prepared


def convert_qat(prepared: Any) -> Any:
    """The q/dq program a target lowers: BN folded into the conv weights with the trained
    statistics, each fake-quant replaced by its learned scale and zero point. Consumes
    ``prepared`` (the fold rewrites its conv weights in place)."""
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "quantization-aware training")
    from torchao.quantization.pt2e import move_exported_model_to_eval

    converted = pt2e.convert_pt2e(to_inference(prepared))
    move_exported_model_to_eval(converted)
    return converted


def adapted_float_module(module: Any, prepared: Any) -> Any:
    """``module`` carrying the QAT-trained float weights and BN statistics (for converters that
    calibrate int8 themselves, i.e. TFLite)."""
    net = copy.deepcopy(module).eval()
    state = prepared.state_dict()
    # BatchNorm counters are not in the QAT graph (drop_batchnorm_counters): keep the module's
    net.load_state_dict({k: v if k.endswith(_BN_COUNTER) else state[k] for k, v in net.state_dict().items()})
    return net


# ---------------------------------------------------------------------------- the training loop


@dataclass
class TrainState:
    """Everything a resumed run needs to continue exactly where the first stopped."""

    step: int
    optimizer: Any
    generator: Any  # torch.Generator: batch order and augmentation
    history: list[float] = field(default_factory=list)  # loss per step


def distributed() -> tuple[int, int]:
    """(rank, world size): torchrun sets WORLD_SIZE; gloo runs on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), world


def new_state(prepared: Any, config: QATConfig) -> TrainState:
    import torch

    opt = torch.optim.AdamW(prepared.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return TrainState(0, opt, torch.Generator().manual_seed(config.ptq.seed))


def init_ranges(prepared: Any, images: Any, config: QATConfig) -> None:
    """Start from PTQ: one pass over ``ptq.calib_size`` images sets every fake-quant range."""
    import torch

    from quantize.ptq import calibrate

    set_phase(prepared, 0, dataclasses.replace(config, freeze_observers_after=1))
    with torch.no_grad():
        calibrate(prepared, images[: config.ptq.calib_size], config.ptq.calib_batch, "initialising fake-quant")


def lr_at(step: int, config: QATConfig) -> float:
    """Cosine from ``lr`` to 0 over ``steps`` (a function of the step, so resume needs no scheduler)."""
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))


def _augment(x: Any, gen: Any) -> Any:
    from edge.finetune import _augment as flip_and_shift

    return flip_and_shift(x, gen)


def distill_loss(student: Any, teacher: Any, labels: Any, config: QATConfig) -> Any:
    """KL(teacher || student) on logits softened by T (times T², Hinton), plus weighted
    cross-entropy on the labelled images when labels are given."""
    import torch.nn.functional as F  # noqa: N812

    t = config.temperature
    loss = F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), log_target=True,
                    reduction="batchmean") * t * t
    if labels is not None and config.ce_weight > 0 and bool((labels >= 0).any()):
        loss = loss + config.ce_weight * F.cross_entropy(student, labels, ignore_index=-1)
    return loss


def train(
    prepared: Any,
    teacher: Any,
    images: Any,
    labels: Any,
    config: QATConfig,
    state: TrainState,
    until: int | None = None,
    on_save: Any = None,
    save_every: int = 0,
    desc: str | None = "QAT",
) -> TrainState:
    """Train ``prepared`` from ``state.step`` to ``until`` (default ``config.steps``).

    Each step draws a global batch from the seeded generator; under torchrun every rank takes its
    share and DistributedDataParallel averages the gradients. ``on_save(state)`` is called every
    ``save_every`` steps and at the end (by rank 0 only)."""
    import torch

    rank, world = distributed()
    model: Any = prepared
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(prepared)
    stop = min(config.steps, until if until is not None else config.steps)
    agree = None
    with torch.no_grad():
        teacher.eval()
    with bar(total=stop - state.step, desc=desc if rank == 0 else None, unit="step") as pbar:
        while state.step < stop:
            set_phase(prepared, state.step, config)
            for group in state.optimizer.param_groups:
                group["lr"] = lr_at(state.step, config)
            idx = torch.randint(0, len(images), (config.batch_size,), generator=state.generator)
            x = _augment(images[idx], state.generator)[rank::world]
            y = labels[idx][rank::world] if labels is not None else None
            with torch.no_grad():
                t_logits = teacher(x)
            s_logits = model(x)
            loss = distill_loss(s_logits, t_logits, y, config)
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            state.optimizer.step()
            value = loss.detach()
            if world > 1:
                torch.distributed.all_reduce(value)
                value /= world
            state.history.append(float(value))
            state.step += 1
            batch_agree = float((s_logits.argmax(1) == t_logits.argmax(1)).float().mean())
            agree = batch_agree if agree is None else 0.9 * agree + 0.1 * batch_agree
            pbar.set_postfix(loss=f"{state.history[-1]:.4f}", agree=f"{agree:.3f}")
            pbar.update(1)
            if on_save is not None and rank == 0 and (
                    state.step == stop or (save_every and state.step % save_every == 0)):
                on_save(state)
    set_phase(prepared, state.step, config)
    return state


def quantize_qat(module: Any, example: Any, images: Any, config: QATConfig, quantizer: str) -> Any:
    """The ``quantize()`` handler for QATConfig: distil on ``images`` (unlabelled), then convert."""
    eff = dataclasses.replace(config.ptq, keep_float=float_patterns(module, config.ptq))
    prepared = prepare_qat(module, example, quantizer, eff)
    init_ranges(prepared, images, config)
    state = new_state(prepared, config)
    train(prepared, module, images, None, config, state)
    return convert_qat(prepared)


# ---------------------------------------------------------------------------- checkpoints


def model_identity(model: Any) -> dict[str, Any]:
    return {"name": model.spec.name, "mode": model.spec.mode, "num_classes": model.num_classes,
            "input_shape": list(model.input_shape), "weights_sha256": model.weights_sha256,
            "weights_source": model.weights_source}


def config_from_dict(d: dict[str, Any]) -> QATConfig:
    ptq = dict(d["ptq"])
    ptq["keep_float"] = tuple(ptq.get("keep_float", ()))
    return QATConfig(**{**d, "ptq": PTQConfig(**ptq)})


def save_checkpoint(path: Path, model: Any, target: str, quantizer: str, config: QATConfig,
                    prepared: Any, state: TrainState) -> None:
    """Write the QAT state atomically: a killed run never leaves half a checkpoint."""
    import torch

    from edge.io import atomic_path

    blob = {
        "format": FORMAT,
        "model": model_identity(model),
        "target": target,
        "quantizer": quantizer,
        "config": dataclasses.asdict(config),
        "step": state.step,
        "history": list(state.history),
        "model_state": prepared.state_dict(),
        "optimizer_state": state.optimizer.state_dict(),
        "generator_state": state.generator.get_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    if not Path(path).is_file():
        raise EdgeError(f"QAT checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:
        raise EdgeError(f"{path} is not a readable QAT checkpoint ({type(exc).__name__})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise EdgeError(f"{path} is not an edge QAT checkpoint (format {FORMAT})")
    return blob


def check_checkpoint(blob: dict[str, Any], path: Path, model: Any, target: str | None) -> None:
    """Refuse a checkpoint trained for another model, other weights or another target."""
    want, have = blob["model"], model_identity(model)
    for key in ("name", "mode", "num_classes", "input_shape", "weights_sha256"):
        if want[key] != have[key]:
            raise EdgeError(f"QAT checkpoint {path} was trained for {key} {want[key]!r}, but the model "
                            f"given has {have[key]!r} (pass the --model/--weights/--input-size it was trained with)")
    if target is not None and blob["target"] != target:
        raise EdgeError(f"QAT checkpoint {path} was trained for target {blob['target']} "
                        f"({blob['quantizer']} quantizer), not {target}: train one with --target {target}")


def restore(blob: dict[str, Any], model: Any) -> tuple[Any, QATConfig, str]:
    """Rebuild the fake-quant model of a checkpoint and load its trained state."""
    config = config_from_dict(blob["config"])
    quantizer, ptq = target_scheme(blob["target"], model.module, config.ptq)
    prepared = prepare_qat(model.module, model.example_input(2), quantizer, ptq)
    # the phase first: moving an exported graph to eval rewrites it (Core ML's graph loses some
    # fake-quant modules), so the state only fits the graph in the phase it was saved in
    set_phase(prepared, int(blob["step"]), config)
    have = prepared.state_dict()
    # checkpoints written before drop_batchnorm_counters still hold the counters
    state = {k: v for k, v in blob["model_state"].items() if k in have or not k.endswith(_BN_COUNTER)}
    try:
        prepared.load_state_dict(state)
    except RuntimeError as exc:
        raise EdgeError(f"QAT checkpoint state does not fit {model.spec.name}: "
                        f"{str(exc).splitlines()[0]}") from exc
    return prepared, config, quantizer


@dataclass
class QATProgram:
    """A trained QAT model ready for its target's exporter."""

    program: Any  # what the exporter converts (q/dq graph; TFLite: QAT-adapted float module)
    reference: Any  # the QAT fake-quant model the artifact must reproduce (its converted q/dq program)
    config: QATConfig
    target: str
    quantizer: str
    step: int
    checkpoint_sha256: str


def load_qat_program(ckpt: Path, model: Any, target: str | None = None) -> QATProgram:
    """The exportable program of a QAT checkpoint, checked against ``model`` (and ``target``)."""
    from edge.io import sha256_path

    blob = read_checkpoint(ckpt)
    check_checkpoint(blob, ckpt, model, target)
    prepared, config, quantizer = restore(blob, model)
    # before convert: convert_pt2e folds BN into the conv weights in place, so the float module
    # read afterwards would apply BatchNorm twice
    adapted = adapted_float_module(model.module, prepared) if blob["target"] == "tflite" else None
    converted = convert_qat(prepared)
    program = adapted if adapted is not None else converted
    from exporters import get_exporter

    # recorded as the target applies it (TFLite: head int8 too), as PTQ manifests are
    applied = dataclasses.replace(config, ptq=get_exporter(blob["target"]).effective_config(config.ptq))
    return QATProgram(program, converted, applied, blob["target"], quantizer, int(blob["step"]),
                      sha256_path(ckpt))


# ---------------------------------------------------------------------------- the whole job


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
    quantizer, ptq = target_scheme(target, model.module, config.ptq)
    iset = open_image_set(data, classes)
    if len(iset.items) < config.eval_images + 2:
        raise EdgeError(f"{data} has {len(iset.items)} image(s); QAT needs more than the "
                        f"{config.eval_images} held out for evaluation")
    held, rest = iset.split(config.eval_images, config.ptq.seed)
    train_items, _ = rest.split(min(config.train_images, len(rest.items)), config.ptq.seed + 1)
    tb = load_batch(train_items.items, model.transform(), progress="decoding training images")
    if tb.skipped:
        say(f"skipped {len(tb.skipped)} unreadable training file(s), e.g. {tb.skipped[0][0].name}")
    labels = _labels(iset, tb.labels, model, config)
    say(f"QAT for {target} ({quantizer} quantizer) on {len(tb.images)} images: "
        + ("distillation + cross-entropy (labelled)" if labels is not None else "distillation (no labels used)"))
    teacher = model.module.eval()
    prepared = prepare_qat(model.module, model.example_input(2), quantizer, ptq)
    state = new_state(prepared, config)
    if blob is not None:
        set_phase(prepared, int(blob["step"]), config)  # the graph in the phase it was saved in
        prepared.load_state_dict(blob["model_state"])
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
        imgs = eb.images.numpy().astype(np.float32)
        fake = to_inference(copy.deepcopy(prepared))
        held_labels = eb.labels if iset.labelled else None
        result["held_out"] = compare(run_torch(teacher, imgs), run_torch(fake, imgs), held_labels, True)
        set_phase(prepared, state.step, config)
        h = result["held_out"]
        say(f"QAT model vs float on {len(imgs)} held-out images: top-1 agreement {h['agreement_top1']:.3f}, "
            f"SQNR {h['sqnr_db']:.1f} dB")
    return result


def _labels(iset: Any, labels: list[int | None], model: Any, config: QATConfig) -> Any:
    """Labels for cross-entropy, or None (unlabelled folder, or ce_weight 0). Folder classes
    that are not the model's classes are an error, not a silent mislabelling."""
    import torch

    if not iset.labelled or config.ce_weight == 0:
        return None
    n = model.num_classes or 0
    if model.labels and iset.classes and list(iset.classes) != list(model.labels)[: len(iset.classes)]:
        raise EdgeError(f"the image folder's classes ({', '.join(iset.classes[:3])}, ...) are not the model's "
                        f"({', '.join(model.labels[:3])}, ...): use --ce-weight 0 to distil without labels")
    if any(lb is not None and lb >= n for lb in labels):
        raise EdgeError(f"the image folder has labels beyond the model's {n} classes: use --ce-weight 0 "
                        "to distil without labels")
    return torch.tensor([lb if lb is not None else -1 for lb in labels])
