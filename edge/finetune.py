"""`edge finetune`: train or fine-tune a timm classifier on an ImageFolder, to get honest weights offline.

Why: hub weights cannot always be downloaded, and a randomly initialised net is chaotic (input noise
of 40 dB comes out of fbnetv3_b's logits at ~9 dB), so int8 fidelity measured on it means nothing.
A few minutes of training on CIFAR-10 gives a reference model whose figures do mean something.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge.data import ImageSet, augment, cache_root, load_batch, open_image_set
from edge.errors import EdgeError
from edge.io import atomic_path
from edge.models import LoadedModel, ModelSpec, check_spec, load_model
from edge.progress import bar, say
from edge.validate import at_least, image_args, output_file, positive


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: float = 1.0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    max_images: int | None = None  # train on a seeded subset (None = all)
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        positive("--epochs", self.epochs)
        at_least("--batch-size", self.batch_size, 1)
        positive("--lr", self.lr)
        at_least("--max-images", self.max_images, 1)
        at_least("--threads", self.threads, 1)


def reference_checkpoint(name: str, cfg: FinetuneConfig) -> Path:
    """Where a reference model trained with ``cfg`` is cached (outside any repository)."""
    import hashlib

    key = hashlib.sha256(repr(cfg).encode()).hexdigest()[:12]
    return cache_root() / "reference" / f"{name}-{key}.safetensors"


def _train_set(iset: ImageSet, model: LoadedModel, cfg: FinetuneConfig) -> tuple[Any, Any]:
    import torch

    n = min(len(iset.items), cfg.max_images or len(iset.items))
    items, _ = iset.split(n, cfg.seed)
    # Decode once at the model's input size; augmentation (flip, shifted crop) runs on tensors.
    batch = load_batch(items.items, model.transform(), progress="decoding training images")
    labels = torch.tensor([lb if lb is not None else -1 for lb in batch.labels])
    if (labels < 0).any():
        raise EdgeError("fine-tuning needs labelled images (an ImageFolder tree or a synset-named folder)")
    return batch.images, labels


def finetune(spec: ModelSpec, data: str, out: Path, cfg: FinetuneConfig) -> dict[str, Any]:
    """Train ``spec`` on ``data``; write a safetensors checkpoint to ``out`` atomically."""
    check_spec(spec)  # before torch is imported, and the checkpoint path before training
    image_args({"--data": data}, None)
    output_file(out, "checkpoint file")
    import torch
    from safetensors.torch import save_file

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    iset = open_image_set(data)
    if not iset.classes:
        raise EdgeError(f"{data} has no class labels; fine-tuning needs an ImageFolder tree")
    spec = ModelSpec(**{**asdict(spec), "num_classes": len(iset.classes), "mode": "classifier"})
    model = load_model(spec, train=True)
    images, labels = _train_set(iset, model, cfg)
    net = model.module
    if spec.weights == "random":
        # timm's init gives this head logits of std ~3 (loss 4.4 on 10 classes); start it at zero.
        head = net.get_classifier()
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps = max(1, math.ceil(cfg.epochs * len(images) / cfg.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    net.train()
    t0, correct, seen = time.time(), 0, 0
    with bar(total=steps, desc=f"finetune {spec.name}", unit="step") as pbar:
        perm = torch.randperm(len(images), generator=gen)
        pos = 0
        for _ in range(steps):
            if pos + cfg.batch_size > len(perm):
                perm, pos = torch.randperm(len(images), generator=gen), 0
            idx = perm[pos : pos + cfg.batch_size]
            pos += cfg.batch_size
            x, y = augment(images[idx], gen), labels[idx]
            logits = net(x)
            loss = torch.nn.functional.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            pbar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
            pbar.update(1)
    net.eval()
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp),
                  metadata={"model": spec.name, "classes": ",".join(iset.classes)})
    info = {"model": spec.name, "classes": iset.classes, "steps": steps, "train_images": len(images),
            "train_acc": correct / max(seen, 1), "seconds": round(time.time() - t0, 1), "checkpoint": str(out)}
    say(f"finetune: {steps} steps in {info['seconds']} s, running train accuracy {info['train_acc']:.3f} -> {out}")
    return info
