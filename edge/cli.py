"""The `edge` command. Start-up imports nothing heavy: each subcommand imports what it needs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge.errors import EdgeError

DEFAULT_OUT = Path("out")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from edge.models import DEFAULT_MODEL, MODES

    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help="timm model name (default: %(default)s)")
    g.add_argument("--weights", default="hub",
                   help="hub (timm pretrained, may download), auto (hub cache else seeded random), "
                        "random (seeded), or a .safetensors/.pth state-dict file (default: %(default)s)")
    g.add_argument("--num-classes", type=int, default=None,
                   help="classifier size; inferred from a weights file when not given")
    g.add_argument("--mode", choices=MODES, default="classifier",
                   help="classifier logits, embeddings (num_classes=0) or features (features_only)")
    g.add_argument("--input-size", type=int, default=None, help="square input side (default: timm's)")
    g.add_argument("--seed", type=int, default=0, help="seed for random weights and image sampling")
    g.add_argument("--recalibrate-bn", action="store_true",
                   help="re-estimate BatchNorm statistics on the calibration images (for random weights)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("images")
    g.add_argument("--calib",
                   help="calibration images: ImageFolder, flat ImageNet folder, or .tar.gz[::SUBDIR]")
    g.add_argument("--calib-size", type=int, default=128, help="calibration images to use (default: %(default)s)")
    g.add_argument("--eval", dest="eval_data", help="held-out images for the parity check (default: rest of --calib)")
    g.add_argument("--eval-size", type=int, default=32,
                   help="held-out images for the parity check (default: %(default)s)")
    g.add_argument("--classes", type=Path, help="class list for flat ImageNet folders (synset per line)")


def _add_quant_args(p: argparse.ArgumentParser) -> None:
    from quantize import OBSERVERS

    g = p.add_argument_group("int8")
    g.add_argument("--observer", choices=OBSERVERS, default=None,
                   help="activation observer (default: the target's; xnnpack and coreml percentile, tflite minmax)")
    g.add_argument("--percentile", type=float, default=99.99, help="for --observer percentile")
    g.add_argument("--int8-head", action="store_true",
                   help="quantize the classifier head too (smaller file; by default it stays float: see README)")
    g.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                   help="module paths (fnmatch, e.g. 'classifier' or 'blocks.5.*') to leave in float")


def build_parser() -> argparse.ArgumentParser:
    from exporters import get_exporter, targets

    parser = argparse.ArgumentParser(
        prog="edge",
        description="Export timm models to ExecuTorch, Core ML and TFLite, and measure what int8 costs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    exp = sub.add_parser("export", help="export a model for one target and check it on its real runtime")
    tsub = exp.add_subparsers(dest="target", required=True)
    for name in targets():
        ex = get_exporter(name)
        tp = tsub.add_parser(name, help=f"{name} ({ex.suffix})")
        tp.add_argument("--precision", choices=ex.precisions, default=ex.precisions[0])
        tg = tp.add_argument_group(f"{name} options")
        for opt in ex.options:
            tg.add_argument("--" + opt.name.replace("_", "-"), dest=f"opt_{opt.name}", choices=opt.choices,
                            default=opt.default, help=f"{opt.help} (default: %(default)s)")
        if name == "coreml":
            from edge.runtimes.coreml import COMPUTE_UNITS

            tg.add_argument("--compute-units", choices=COMPUTE_UNITS, default="ALL",
                            help="Core ML compute units for the parity run on macOS (default: %(default)s)")
        _add_model_args(tp)
        _add_data_args(tp)
        _add_quant_args(tp)
        tp.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
        tp.add_argument("--threads", type=int, default=None, help="runtime threads for the parity run")
        tp.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        tp.set_defaults(func=cmd_export)

    demo = sub.add_parser("demo", help="the main job on embedded defaults (what `make demo` runs)")
    demo.add_argument("--out", type=Path, default=DEFAULT_OUT / "demo")
    demo.add_argument("--threads", type=int, default=2)
    demo.add_argument("--runs", type=int, default=50)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(func=cmd_demo)

    ft = sub.add_parser("finetune", help="train or fine-tune a timm classifier on an ImageFolder")
    _add_model_args(ft)
    ft.add_argument("--data", required=True, help="ImageFolder tree or .tar.gz[::SUBDIR]")
    ft.add_argument("--epochs", type=float, default=1.0)
    ft.add_argument("--batch-size", type=int, default=64)
    ft.add_argument("--lr", type=float, default=1e-3)
    ft.add_argument("--max-images", type=int, default=None, help="train on a seeded subset")
    ft.add_argument("--out", type=Path, required=True, help="checkpoint path (.safetensors)")
    ft.set_defaults(func=cmd_finetune)
    return parser


def _model_spec(args: argparse.Namespace) -> Any:
    from edge.models import ModelSpec

    return ModelSpec(name=args.model, weights=args.weights, mode=args.mode, num_classes=args.num_classes,
                     seed=args.seed, input_size=args.input_size)


def cmd_export(args: argparse.Namespace) -> int:
    from edge.io import ensure_writable_dir
    from edge.pipeline import export_and_verify, load_inputs
    from exporters import get_exporter
    from quantize import PTQConfig

    options = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_")}
    runtime_options = {"compute_units": args.compute_units} if getattr(args, "compute_units", None) else None
    exporter = get_exporter(args.target, **options)
    quantized = args.precision in exporter.quantized_precisions
    qcfg = PTQConfig(calib_size=args.calib_size, observer=args.observer, percentile=args.percentile,
                     keep_float=tuple(args.keep_float), float_head=not args.int8_head,
                     seed=args.seed) if quantized else None
    exporter.validate(args.precision, qcfg)
    exporter.check()
    ensure_writable_dir(args.out)  # fail before minutes of work, not after
    inputs = load_inputs(_model_spec(args), args.calib, args.calib_size, args.eval_data, args.eval_size,
                         args.classes, args.recalibrate_bn, require_calib=quantized)
    report = export_and_verify(args.target, inputs, args.precision, args.out, qcfg, args.threads,
                               options, runtime_options)
    print(json.dumps(report, indent=2) if args.json else format_parity(report))
    return 0


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def format_parity(report: dict[str, Any]) -> str:
    lines = [f"{report['target']} {report['precision']}: {report['artifact']}"]
    d = report.get("delegation")
    if d:
        left = ", ".join(f"{k}×{v}" for k, v in d["non_delegated_by_op"].items()) or "none"
        lines.append(f"  delegated ops: {d['delegated_ops']}, left out: {d['non_delegated_ops']} ({left})")
    spec = report.get("spec")
    if spec:
        lines.extend(format_coreml_spec(spec))
    par = report.get("parity")
    if par:
        f = par["vs_float"]
        lines.append(f"  parity on {par['images']} held-out images vs float PyTorch:")
        lines.extend(f"    ({note})" for note in par.get("notes", []))
        lines.append(f"    max |diff| {_fmt(f['max_abs_diff'], '.3g')}   SQNR {_fmt(f['sqnr_db'], '.1f')} dB"
                     f"   cosine {_fmt(f['cosine'], '.5f')}")
        if f["agreement_top1"] is not None:
            lines.append(f"    top-1 agreement {_fmt(f['agreement_top1'], '.1%')}   KL {_fmt(f['kl'], '.4f')}")
        if f["top1"] is not None:
            lines.append(f"    top-1 {_fmt(f['top1'], '.1%')} (float {_fmt(f['ref_top1'], '.1%')})   "
                         f"top-5 {_fmt(f['top5'], '.1%')} (float {_fmt(f['ref_top5'], '.1%')})")
        qf = par.get("quantized_program_vs_float")
        if qf:
            agree = qf["agreement_top1"]
            lines.append(f"  quantization alone (fake-quant PyTorch vs float): SQNR {_fmt(qf['sqnr_db'], '.1f')} dB"
                         + (f", top-1 agreement {agree:.1%}" if agree is not None else ""))
        q = par.get("vs_quantized_program")
        if q:
            lines.append(f"  vs the quantized PyTorch program it was lowered from: SQNR {_fmt(q['sqnr_db'], '.1f')} dB"
                         + (f", top-1 agreement {q['agreement_top1']:.1%}" if q["agreement_top1"] is not None else ""))
    return "\n".join(lines)


def format_coreml_spec(spec: dict[str, Any]) -> list[str]:
    """The spec facts that show a Core ML package is what its precision promises."""
    ops = spec["op_counts"]
    keys = ("conv", "linear", "quantize", "dequantize", "constexpr_affine_dequantize",
            "constexpr_blockwise_shift_scale", "cast")
    shown = ", ".join(f"{k}×{ops[k]}" for k in keys if k in ops)
    ins = ", ".join(f"{i['name']} {i['dtype']} {i['shape']}" for i in spec["inputs"])
    outs = ", ".join(f"{o['name']} {o['dtype']}" for o in spec["outputs"])
    labels = spec["labels"]
    return [
        f"  spec: {spec['opset']}, {sum(ops.values())} ops ({shown}), {spec['size_bytes'] / 1e6:.2f} MB",
        f"  weights of conv/linear: {', '.join(f'{k}×{v}' for k, v in spec['weights'].items())}",
        f"  activation dtypes: {', '.join(f'{k}×{v}' for k, v in spec['activation_dtypes'].items())}",
        f"  inputs: {ins}; outputs: {outs}" + (f"; {len(labels)} labels" if labels else ""),
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo import main as demo_main

    return demo_main(args.out, args.threads, args.runs, args.json)


def cmd_finetune(args: argparse.Namespace) -> int:
    from edge.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         max_images=args.max_images, seed=args.seed)
    info = finetune(_model_spec(args), args.data, args.out, cfg)
    print(json.dumps(info, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except EdgeError as exc:
        print(f"edge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
