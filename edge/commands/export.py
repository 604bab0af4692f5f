"""`edge export <target>`: one artifact, checked on its real runtime against float."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.commands._args import (
    DEFAULT_OUT,
    NamedSubcommands,
    add_data_args,
    add_model_args,
    add_quant_args,
    model_spec,
)
from edge.progress import emit, tell


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from exporters import exporter_class, targets

    exp = sub.add_parser("export", help="export a model for one target and check it on its real runtime")
    tsub = exp.add_subparsers(dest="target", required=True, action=NamedSubcommands, unknown=exporter_class)
    for name in targets():
        ex = exporter_class(name)
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
    from edge.pipeline import QAT_DRIFT_AGREEMENT, ExportJob, auto_missed, run_export

    job = ExportJob(
        spec=model_spec(args), target=args.target, precision=args.precision, out=args.out,
        options={k[4:]: v for k, v in vars(args).items() if k.startswith("opt_")},
        runtime_options={k[3:]: v for k, v in vars(args).items() if k.startswith("rt_")} or None,
        calib=args.calib, calib_size=args.calib_size, eval_data=args.eval_data, eval_size=args.eval_size,
        classes=args.classes, recalibrate_bn=args.recalibrate_bn, threads=args.threads, observer=args.observer,
        percentile=args.percentile, search_images=args.search_images, keep_float=tuple(args.keep_float),
        int8_head=args.int8_head, qat=args.qat, target_agreement=args.target_agreement, activations=args.activations,
        float_depthwise=args.float_depthwise, auto_search_images=args.auto_search_images)
    report = run_export(job)
    emit(json.dumps(report, indent=2) if args.json else format_parity(report))
    missed = auto_missed(report)
    if missed is not None:
        tell(f"edge: error: {missed}")
        return 1
    if report.get("qat_drift"):
        agree = report["parity"]["vs_quantized_program"]["agreement_top1"]
        tell(f"edge: warning: drift — the artifact agrees with the QAT model it was exported from on only "
             f"{100 * agree:.1f}% of held-out top-1 (expected >= {100 * QAT_DRIFT_AGREEMENT:.1f}%); "
             "see docs/qat.md")
    return 0
