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

This module is the mechanics (the fake-quant model, the training loop, checkpoints); the job
that picks a target's scheme, decodes images, trains, evaluates and exports is edge.qat.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge._deps import require
from edge.data import augment
from edge.errors import EdgeError
from edge.progress import bar
from quantize.config import PTQConfig, QATConfig
from quantize.ptq import export_for_quantization
from quantize.quantizers import make_quantizer

FORMAT = "edge.qat/1"


# ---------------------------------------------------------------------------- the model to train


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
    unfuse_float_conv_bn(converted)
    return converted


def _scale_of(node: Any) -> Any:
    """The node a ``reshape(scale, shape)`` reshapes, else None."""
    import torch

    if getattr(node, "op", None) == "call_function" and node.target in (torch.ops.aten.reshape.default,
                                                                         torch.ops.aten.view.default):
        return node.args[0]
    return None


def unfuse_float_conv_bn(gm: Any) -> int:
    """Undo QAT's conv-BN fusion where the quantizer left the conv float (a float head, a kept-float
    layer): ``conv(x, w * s) / s`` becomes ``conv(x, w)``, exact, ahead of the same BatchNorm.

    Why: prepare_qat_pt2e rewrites every conv-BN pair into that trainable form, and convert_pt2e
    folds back only the quantized ones, so the float conv's weight stayed a computation on the
    parameters; XNNPACK takes static conv weights only and left that conv out of the delegate.
    Returns how many convs were rewritten (``gm`` changed in place)."""
    import torch

    aten, done = torch.ops.aten, 0
    for conv in list(gm.graph.nodes):
        if conv.op != "call_function" or conv.target not in (aten.conv2d.default, aten.conv1d.default):
            continue
        weight, users = conv.args[1], list(conv.users)
        if getattr(weight, "target", None) is not aten.mul.Tensor or len(users) != 1:
            continue
        div = users[0]
        scale = _scale_of(weight.args[1])
        if div.target is not aten.div.Tensor or div.args[0] is not conv or scale is None \
                or _scale_of(div.args[1]) is not scale:
            continue
        conv.args = (conv.args[0], weight.args[0], *conv.args[2:])
        div.replace_all_uses_with(conv)
        gm.graph.erase_node(div)
        done += 1
    if done:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return done


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
            x = augment(images[idx], state.generator)[rank::world]
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


def load_state(prepared: Any, blob: dict[str, Any], model_name: str) -> None:
    """Load a checkpoint's fake-quant state into ``prepared`` (built by prepare_qat for its model)."""
    # the phase first: moving an exported graph to eval rewrites it (Core ML's graph loses some
    # fake-quant modules), so the state only fits the graph in the phase it was saved in
    set_phase(prepared, int(blob["step"]), config_from_dict(blob["config"]))
    have = prepared.state_dict()
    saved = blob["model_state"]
    # checkpoints written before drop_batchnorm_counters still hold the counters
    state = OrderedDict((k, v) for k, v in saved.items() if k in have or not k.endswith(_BN_COUNTER))
    # the per-module versions: without them torchao's observers read the state as an old format
    # and reset their eps
    state._metadata = getattr(saved, "_metadata", None)  # type: ignore[attr-defined]
    try:
        prepared.load_state_dict(state)
    except RuntimeError as exc:
        raise EdgeError(f"QAT checkpoint state does not fit {model_name}: "
                        f"{str(exc).splitlines()[0]}") from exc


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
