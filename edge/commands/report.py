"""`edge report`: every target and precision measured against float on the same images, in one run."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.commands._args import DEFAULT_OUT, add_auto_args, add_model_args, csv_list
from edge.progress import emit, tell


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from quantize import OBSERVERS

    p = sub.add_parser("report", help="accuracy, fidelity and latency of every target vs float, with plots")
    add_model_args(p)
    p.add_argument("--targets", type=csv_list, default=(),
                   help="comma-separated targets (default: every registered target)")
    p.add_argument("--precisions", type=csv_list, default=("fp32", "int8"),
                   help="comma-separated precisions; each target exports those it offers (default: fp32,int8)")
    g = p.add_argument_group("images")
    g.add_argument("--calib", help="calibration images (ImageFolder, flat ImageNet folder, .tar.gz[::SUBDIR])")
    g.add_argument("--calib-size", type=int, default=128)
    g.add_argument("--data", help="evaluation images (default: the --calib images not used to calibrate)")
    g.add_argument("--eval-size", type=int, default=200, help="evaluation images (default: %(default)s)")
    g.add_argument("--classes", type=Path, help="class list for flat ImageNet folders")
    q = p.add_argument_group("int8")
    q.add_argument("--observer", choices=OBSERVERS, default=None, help="activation observer (default: the target's)")
    q.add_argument("--int8-head", action="store_true", help="quantize the classifier head too")
    q.add_argument("--no-sensitivity", action="store_true", help="skip the per-layer sensitivity analysis")
    q.add_argument("--keep-float-top", type=int, default=0, metavar="K",
                   help="add rows with the K most sensitive layers of each quantizer kept float")
    add_auto_args(q)
    q.add_argument("--recipes", type=csv_list, default=(), metavar="NAMES",
                   help="extra int8 rows, one per target that builds the recipe: dynamic (int8 weights, each "
                        "conv/linear input quantized at run time: ExecuTorch)")
    t = p.add_argument_group("latency")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--runs", type=int, default=50)
    t.add_argument("--warmup", type=int, default=5)
    p.add_argument("--qat", type=Path, action="append", default=[], metavar="CKPT",
                   help="add an int8 row exported from this QAT checkpoint (`edge qat --out`; repeatable)")
    p.add_argument("--device-results", type=Path, action="append", default=[],
                   help="merge `edge bench --out FILE` results as device rows (repeatable)")
    p.add_argument("--workers", type=int, default=2,
                   help="processes building missing artifacts side by side; latency is timed after (default: 2)")
    p.add_argument("--no-reuse", action="store_true", help="re-export even when a matching artifact exists")
    p.add_argument("--artifacts", type=Path, default=None, metavar="DIR",
                   help="folder where artifacts are built and reused by recipe, shareable between reports "
                        "(default: OUT/artifacts)")
    p.add_argument("--fail-on", metavar="RULES",
                   help="exit 1 when a row breaks a rule, e.g. 'top1_drop>1.0,agreement<0.98' "
                        "(metrics: top1_drop, top5_drop, top1, agreement, sqnr, kl, latency_p50, size_mb)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT / "report", help="output folder (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.bench import load_results
    from edge.commands._args import model_spec
    from edge.report.gate import check, parse_rules
    from edge.report.render import to_markdown, write_outputs
    from edge.report.run import ReportConfig, run_report
    from edge.report.schema import validate
    from quantize import PTQConfig

    rules = parse_rules(args.fail_on) if args.fail_on else []  # bad rules fail before any work
    devices = [r for path in args.device_results for r in load_results(path)]
    quant = PTQConfig(calib_size=args.calib_size, observer=args.observer, float_head=not args.int8_head,
                      seed=args.seed)
    cfg = ReportConfig(targets=args.targets, precisions=args.precisions, quant=quant, eval_size=args.eval_size,
                       threads=args.threads, runs=args.runs, warmup=args.warmup, sensitivity=not args.no_sensitivity,
                       keep_float_k=args.keep_float_top, reuse=not args.no_reuse, recalibrate_bn=args.recalibrate_bn,
                       artifacts=args.artifacts, workers=args.workers, qat=tuple(args.qat),
                       target_agreement=args.target_agreement, auto_search_images=args.auto_search_images,
                       recipes=args.recipes)
    report = run_report(model_spec(args), args.calib, args.data, args.out, cfg, args.classes, devices)
    validate(report)
    paths = write_outputs(report, args.out)
    emit(to_markdown(report))
    tell(f"wrote {paths['json']}, {paths['md']}, {paths['html']}")
    if rules:
        failures, unchecked = check(report["rows"], rules)
        for line in unchecked:
            tell(f"gate: not checked — {line}")
        for line in failures:
            tell(f"gate: FAIL — {line}")
        if failures:
            return 1
        tell(f"gate: passed ({', '.join(map(str, rules))})")
    return 0
