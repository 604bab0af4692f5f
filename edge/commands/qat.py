"""`edge qat`: quantization-aware training for one target, label-free by default (docs/qat.md)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from edge.commands._args import add_model_args, model_spec
from edge.progress import emit


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from edge.qat import qat_targets

    p = sub.add_parser("qat", help="quantization-aware training (distillation from float) for one target")
    add_model_args(p)
    p.add_argument("--target", choices=qat_targets(), required=True,
                   help="train with this target's int8 scheme (export it with `edge export TARGET --qat CKPT`)")
    p.add_argument("--data", required=True,
                   help="training images: any folder (labels optional), ImageFolder, or .tar.gz[::SUBDIR]")
    p.add_argument("--classes", type=Path, help="class list for flat ImageNet folders (synset per line)")
    p.add_argument("--steps", type=int, default=300, help="training steps (cosine schedule length)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write (QAT state)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=float, default=5e-5)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--temperature", type=float, default=2.0, help="distillation temperature")
    g.add_argument("--ce-weight", type=float, default=0.5,
                   help="cross-entropy weight when the images are labelled (0: distillation only)")
    g.add_argument("--freeze-bn-after", type=int, default=0, help="step from which BatchNorm statistics are frozen")
    g.add_argument("--freeze-observers-after", type=int, default=None,
                   help="step from which fake-quant ranges are frozen (default: 3/4 of --steps)")
    g.add_argument("--train-images", type=int, default=4096, help="seeded subset of --data decoded for training")
    g.add_argument("--eval-images", type=int, default=64, help="held out of --data for the final fidelity check")
    g.add_argument("--calib-size", type=int, default=128, help="images that initialise the fake-quant ranges")
    g.add_argument("--int8-head", action="store_true", help="quantize the classifier head too (see README)")
    g.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                   help="module paths (fnmatch) left in float")
    g.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps (and at the end)")
    g.add_argument("--stop-after", type=int, default=None,
                   help="stop at this step (checkpointed; --resume continues to --steps)")
    g.add_argument("--threads", type=int, default=None, help="torch threads (1 is often fastest on a busy machine)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.models import load_model
    from edge.progress import say
    from edge.qat import check_qat, run_qat
    from quantize import PTQConfig, QATConfig

    spec = model_spec(args)  # everything checked before torch is imported or the model loaded
    check_qat(spec, args.data, args.out, args.classes, args.resume, args.threads, args.save_every, args.stop_after)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    ptq = PTQConfig(calib_size=args.calib_size, keep_float=tuple(args.keep_float), float_head=not args.int8_head,
                    seed=args.seed)
    freeze_obs = args.freeze_observers_after if args.freeze_observers_after is not None else (3 * args.steps) // 4
    cfg = QATConfig(ptq=ptq, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                    temperature=args.temperature, ce_weight=args.ce_weight, freeze_bn_after=args.freeze_bn_after,
                    freeze_observers_after=freeze_obs, train_images=args.train_images,
                    eval_images=args.eval_images)
    model = load_model(spec, train=True)
    for note in model.notes:
        say(f"note: {note}")
    result = run_qat(model, args.target, args.data, args.out, cfg, resume=args.resume, until=args.stop_after,
                     save_every=args.save_every, classes=args.classes)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    if args.json:
        emit(json.dumps(result, indent=2))
    else:
        h = result.get("held_out")
        emit(f"QAT {result['target']}: step {result['step']}/{result['steps']}, loss "
              f"{result['loss_first']:.4f} -> {result['loss_last']:.4f}, checkpoint {result['checkpoint']}")
        if h:
            top1 = f", top-1 {100 * h['top1']:.1f}% (float {100 * h['ref_top1']:.1f}%)" if h["top1"] is not None else ""
            emit(f"held-out {int(h['images'])} images, QAT model vs float: top-1 agreement "
                  f"{100 * h['agreement_top1']:.1f}%, SQNR {h['sqnr_db']:.1f} dB{top1}")
        if result["step"] < result["steps"]:
            emit(f"stopped at step {result['step']}: `edge qat ... --resume` continues it")
    return 0
