"""`edge export <target>`: one artifact, checked on its real runtime against float."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.commands._args import DEFAULT_OUT, add_data_args, add_model_args, add_quant_args, model_spec


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
