"""`edge finetune`: train or fine-tune a timm classifier (the offline reference model)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.commands._args import add_model_args, model_spec
from edge.progress import emit


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ft = sub.add_parser("finetune", help="train or fine-tune a timm classifier on an ImageFolder")
    add_model_args(ft)
    ft.add_argument("--data", required=True, help="ImageFolder tree or .tar.gz[::SUBDIR]")
    ft.add_argument("--epochs", type=float, default=1.0)
    ft.add_argument("--batch-size", type=int, default=64)
    ft.add_argument("--lr", type=float, default=1e-3)
    ft.add_argument("--max-images", type=int, default=None, help="train on a seeded subset")
    ft.add_argument("--out", type=Path, required=True, help="checkpoint path (.safetensors)")
    ft.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         max_images=args.max_images, seed=args.seed)
    info = finetune(model_spec(args), args.data, args.out, cfg)
    emit(json.dumps(info, indent=2))
    return 0
