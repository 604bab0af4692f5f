"""`edge bench`: latency, load time and memory of artifacts on devices (local, ssh://, adb://)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.progress import emit


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from edge.bench.devices import url_forms
    from exporters import exporter_class, targets

    forms = ", ".join(url_forms())
    suffixes = ", ".join(exporter_class(t).suffix for t in targets())
    p = sub.add_parser("bench", help=f"run artifacts on devices ({forms}) and time them",
                       description="Run each artifact (with its manifest beside it) on each device and collect "
                                   "edge.bench/1 results. See docs/bench.md.")
    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT", help=f"an exported artifact ({suffixes})")
    p.add_argument("--device", action="append", default=[], metavar="URL",
                   help=f"{forms} (repeatable; default: local)")
    p.add_argument("--devices", type=Path, metavar="FILE",
                   help="devices file: `name url [option=value ...]` per line, or a .json list (docs/bench.md)")
    p.add_argument("--threads", type=int, default=2, help="runtime threads (default: %(default)s)")
    p.add_argument("--runs", type=int, default=20, help="timed runs (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs, the first run included (default: %(default)s)")
    p.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds to reach a device (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds for one artifact's run on a device (default: %(default)s)")
    g = p.add_argument_group("transports")
    g.add_argument("--python",
                   help="Python on ssh/adb devices (default: python3); may be a command, e.g. 'env X=1 python3'")
    g.add_argument("--identity", help="ssh: private key file (ssh -i)")
    g.add_argument("--known-hosts", help="ssh: known_hosts file holding the device's key (default: ~/.ssh/known_hosts)")
    g.add_argument("--adb-runner", choices=("benchmark_model", "executor_runner", "minibench", "python"),
                   help="adb: the benchmark tool on the device")
    g.add_argument("--adb-runner-path", help="adb: path of benchmark_model/executor_runner on the device "
                                             "(default: /data/local/tmp/<tool>)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--out", type=Path, help="write all results to this JSON file (a list; written atomically)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.bench.devices import BenchConfig
    from edge.bench.fleet import DeviceSpec, build_devices, parse_devices_file, run_fleet
    from edge.bench.results import format_table
    from edge.errors import EdgeError
    from edge.io import write_json
    from edge.validate import input_file, output_file

    if args.out:
        output_file(args.out, "--out file")  # before the benchmark runs, not after
    if args.devices:
        input_file(args.devices, "devices file")
    cfg = BenchConfig(threads=args.threads, runs=args.runs, warmup=args.warmup,
                      connect_timeout=args.connect_timeout, run_timeout=args.timeout)
    specs = [DeviceSpec(url) for url in args.device]
    if args.devices:
        specs += parse_devices_file(args.devices)
    if not specs:
        specs = [DeviceSpec("local")]
    defaults = {k: v for k, v in (("python", args.python), ("identity", args.identity),
                                  ("known_hosts", args.known_hosts), ("adb_runner", args.adb_runner),
                                  ("adb_runner_path", args.adb_runner_path)) if v is not None}
    devices = build_devices(specs, defaults)
    results = run_fleet(devices, list(args.artifacts), cfg)
    if args.out:
        write_json(args.out, results)
    emit(json.dumps(results, indent=2) if args.json else format_table(results))
    failed = [r for r in results if not r["ok"]]
    if failed:
        f = failed[0]
        raise EdgeError(f"{len(failed)} of {len(results)} run(s) failed; first: {f['device']['name']}: "
                        f"{f['artifact']}: {f['error']}")
    return 0
