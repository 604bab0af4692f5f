"""`edge export <target>`: one artifact, checked on its real runtime against float."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge.commands._args import DEFAULT_OUT, add_data_args, add_model_args, add_quant_args, model_spec

# the artifact must agree with the QAT model it came from on this share of held-out top-1 (docs/qat.md)
QAT_DRIFT_AGREEMENT = 0.995


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from exporters import get_exporter, targets

    exp = sub.add_parser("export", help="export a model for one target and check it on its real runtime")
    tsub = exp.add_subparsers(dest="target", required=True)
    for name in targets():
        ex = get_exporter(name)
        tp = tsub.add_parser(name, help=f"{name} ({ex.suffix})")
        tp.add_argument("--precision", choices=ex.precisions, default=ex.precisions[0])
        tg = tp.add_argument_group(f"{name} options")
        for prefix, opts in (("opt_", ex.options), ("rt_", ex.runtime_options)):
            for opt in opts:
                tg.add_argument("--" + opt.name.replace("_", "-"), dest=prefix + opt.name, choices=opt.choices,
                                default=opt.default, help=f"{opt.help} (default: %(default)s)")
        add_model_args(tp)
        add_data_args(tp)
        add_quant_args(tp)
        tp.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
        tp.add_argument("--threads", type=int, default=None, help="runtime threads for the parity run")
        tp.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
        tp.add_argument("--qat", type=Path, metavar="CKPT",
                        help="export int8 from this `edge qat` checkpoint (trained for this target)")
        tp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.formatting import format_parity
    from edge.io import ensure_writable_dir
    from edge.pipeline import export_and_verify, load_inputs
    from exporters import get_exporter
    from quantize import PTQConfig

    options = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt_")}
    runtime_options = {k[3:]: v for k, v in vars(args).items() if k.startswith("rt_")} or None
    exporter = get_exporter(args.target, **options)
    quantized = args.precision in exporter.quantized_precisions
    if args.qat is not None:
        return _run_qat(args, exporter, options, runtime_options)
    qcfg = PTQConfig(calib_size=args.calib_size, observer=args.observer, percentile=args.percentile,
                     keep_float=tuple(args.keep_float), float_head=not args.int8_head,
                     seed=args.seed) if quantized else None
    exporter.validate(args.precision, qcfg)
    exporter.check()
    ensure_writable_dir(args.out)  # fail before minutes of work, not after
    inputs = load_inputs(model_spec(args), args.calib, args.calib_size, args.eval_data, args.eval_size,
                         args.classes, args.recalibrate_bn, require_calib=quantized)
    report = export_and_verify(args.target, inputs, args.precision, args.out, qcfg, args.threads,
                               options, runtime_options)
    print(json.dumps(report, indent=2) if args.json else format_parity(report))
    return 0


def _run_qat(args: argparse.Namespace, exporter: Any, options: dict[str, str],
             runtime_options: dict[str, str] | None) -> int:
    """`--qat CKPT`: the int8 artifact comes from the QAT model, which the parity run compares it with."""
    from edge.errors import EdgeError
    from edge.formatting import format_parity
    from edge.io import ensure_writable_dir
    from edge.pipeline import export_and_verify, load_inputs
    from quantize.qat import load_qat_program

    if args.precision not in exporter.quantized_precisions:
        raise EdgeError(f"--qat exports int8; pass --precision {exporter.quantized_precisions[0]}")
    if args.observer is not None or args.keep_float or args.int8_head:
        raise EdgeError("--observer/--keep-float/--int8-head are set when training (`edge qat`), not with --qat")
    exporter.check()
    ensure_writable_dir(args.out)
    inputs = load_inputs(model_spec(args), args.calib, args.calib_size, args.eval_data, args.eval_size,
                         args.classes, args.recalibrate_bn, require_calib=exporter.quantizer is None)
    program = load_qat_program(args.qat, inputs.model, args.target)
    report = export_and_verify(args.target, inputs, args.precision, args.out, None, args.threads, options,
                               runtime_options, qat=program)
    par = report["parity"]
    vs_qat = par["vs_quantized_program"] if par else None
    agree = vs_qat["agreement_top1"] if vs_qat else None
    report["method"] = "qat"
    report["qat_drift"] = agree is not None and agree < QAT_DRIFT_AGREEMENT
    print(json.dumps(report, indent=2) if args.json else format_parity(report))
    if agree is not None and report["qat_drift"]:
        print(f"edge: warning: drift — the artifact agrees with the QAT model it was exported from on only "
              f"{100 * agree:.1f}% of held-out top-1 (expected >= {100 * QAT_DRIFT_AGREEMENT:.1f}%); "
              "see docs/qat.md", file=sys.stderr)
    return 0
