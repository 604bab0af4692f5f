"""Parsers that turn the output of other people's benchmark tools into "edge.bench/1" results.

Each parser takes the tool's raw output and the run's context, and fills only what the tool
measured: everything else stays null (never estimated). Formats, from upstream source:

* LiteRT/TFLite `benchmark_model` (tensorflow/lite/tools/benchmark/benchmark_model.cc,
  BenchmarkLoggingListener::OnBenchmarkEnd and BenchmarkModel::Run; the per-run statistics line is
  tsl::Stat/StatWithPercentiles::OutputToStream, xla/tsl/util/stats_calculator.h).
* ExecuTorch minibench `benchmark_results.json` (extension/benchmark/android/benchmark/app/src/main/
  java/org/pytorch/minibench/ModelRunner.kt and BenchmarkMetric.kt, serialised by Gson).
* ExecuTorch `executor_runner` (examples/portable/executor_runner/executor_runner.cpp, ET_LOG lines
  "Model loaded in %f ms.", "Iteration %u of %u: %f ms", "Model executed successfully %u time(s) in
  %f ms." and the "OutputX i: tensor(sizes=[...], ...)" summary).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from edge.bench.results import LATENCY_KEYS, SCHEMA


@dataclass(frozen=True)
class RunContext:
    """What the host knows about one run independent of the tool's output."""

    artifact: str
    device: dict[str, Any]
    threads: int | None
    warmup: int | None
    runs: int | None
    target: str | None = None
    precision: str | None = None
    artifact_sha256: str | None = None
    expected_shapes: list[list[int]] = field(default_factory=list)


def base_result(ctx: RunContext, runner: str, runtime: str | None) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "artifact": ctx.artifact, "artifact_sha256": ctx.artifact_sha256, "target": ctx.target,
        "precision": ctx.precision, "runner": runner, "runtime": runtime, "runtime_version": None,
        "threads": ctx.threads, "warmup": ctx.warmup, "runs": ctx.runs, "load_ms": None, "first_run_ms": None,
        "latency_ms": dict.fromkeys(LATENCY_KEYS), "peak_rss_mb": None,
        "output": {"shapes": None, "finite": None, "shape_ok": None},
        "device": dict(ctx.device), "ok": False, "error": None,
    }


def _r3(v: float | None) -> float | None:
    return None if v is None else round(float(v), 3)


# --- LiteRT benchmark_model ---------------------------------------------------------------------

_NUM = r"(-?[0-9.]+(?:e[+-]?[0-9]+)?|nan|-?inf)"
_TIMINGS = re.compile(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                      rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}")
_OLD_TIMINGS = re.compile(rf"Average inference timings in us: Warmup: {_NUM}, Init: {_NUM}, Inference: {_NUM}")
_STAT = re.compile(r"count=(\d+)(.*)")
_PEAK_OLD = re.compile(rf"Peak memory footprint \(MB\): init={_NUM} overall={_NUM}")
_PEAK_MONITOR = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}")
_DELTA = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init={_NUM} overall={_NUM}")


def _stat_fields(rest: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\w+)=(-?[0-9.]+(?:e[+-]?[0-9]+)?)", rest)}


def parse_benchmark_model(text: str, ctx: RunContext) -> dict[str, Any]:
    """benchmark_model's log → result. It reports Init (load), First inference, the warm-up and
    timed runs' count/min/max/avg and, in newer builds, p5/median/p95: no p90 (null)."""
    res = base_result(ctx, "benchmark_model", "litert")
    stats = []
    for line in text.splitlines():
        m = _STAT.search(line)
        if m and "Running benchmark" not in line:
            stats.append({"count": float(m.group(1)), **_stat_fields(m.group(2))})
    m = _TIMINGS.search(text)
    old = _OLD_TIMINGS.search(text)
    if m is None and old is None:
        errors = [ln.strip() for ln in text.splitlines() if "ERROR" in ln or "Error" in ln or "Failed" in ln]
        res["error"] = "benchmark_model reported no timings" + (f": {errors[-1]}" if errors else "")
        return res
    if m is not None:
        init_us, first_us, _, avg_us = (float(g) for g in m.groups())
        res["first_run_ms"] = _r3(first_us / 1000.0)
    else:
        _, init_us, avg_us = (float(g) for g in old.groups())  # type: ignore[union-attr]
    res["load_ms"] = _r3(init_us / 1000.0)
    lat = {"mean": avg_us / 1000.0}
    if len(stats) >= 2:  # BenchmarkModel::Run logs the warm-up runs' line, then the timed runs'
        warm, reg = stats[-2], stats[-1]
        res["warmup"] = int(warm["count"])
        res["runs"] = int(reg["count"])
        for ours, theirs in (("min", "min"), ("max", "max"), ("p50", "median")):
            if theirs in reg:
                lat[ours] = reg[theirs] / 1000.0
        if "curr" in reg and "min" not in reg:  # "count=N curr=X(all same)": every run took X
            lat.update(min=reg["curr"] / 1000.0, max=reg["curr"] / 1000.0, p50=reg["curr"] / 1000.0)
    res["latency_ms"] = {k: _r3(lat.get(k)) for k in LATENCY_KEYS}
    peak = _PEAK_MONITOR.search(text)
    peak_old = _PEAK_OLD.search(text)
    if peak is not None:
        res["peak_rss_mb"] = _r3(float(peak.group(1)))
    elif peak_old is not None:
        res["peak_rss_mb"] = _r3(float(peak_old.group(2)))  # overall max RSS (kB / 1024)
    delta = _DELTA.search(text)
    if delta is not None:
        res["extra"] = {"memory_footprint_delta_mb": {"init": float(delta.group(1)), "overall": float(delta.group(2))}}
    res["ok"] = True
    return res


# --- ExecuTorch minibench -----------------------------------------------------------------------


def parse_minibench(text: str, ctx: RunContext) -> dict[str, Any]:
    """minibench's benchmark_results.json → result. It reports the average and trimmed-mean
    latency, load time, load status and PSS growth: no percentiles, first run or RSS (null)."""
    res = base_result(ctx, "minibench", "executorch")
    res["threads"] = None  # minibench takes no thread count
    try:
        metrics = json.loads(text)
    except ValueError as exc:
        res["error"] = f"minibench's benchmark_results.json is not JSON: {exc}"
        return res
    if not isinstance(metrics, list) or not all(isinstance(m, dict) and "metric" in m for m in metrics):
        res["error"] = "minibench's benchmark_results.json is not a list of metrics"
        return res
    values = {m["metric"]: m.get("actualValue") for m in metrics}
    info = next((m.get("deviceInfo") for m in metrics if isinstance(m.get("deviceInfo"), dict)), None)
    if info and not res["device"].get("os") and info.get("os"):
        res["device"]["os"] = info["os"]
    res["load_ms"] = _r3(values.get("model_load_time(ms)"))
    status = values.get("load_status")
    extra = {k: values[k] for k in ("trimmean_inference_latency(ms)", "ram_pss_usage(mb)") if k in values}
    if extra:
        res["extra"] = extra
    if status not in (None, 0, 0.0):
        res["error"] = f"minibench could not load the model (ExecuTorch error code {int(status)})"
        return res
    if "avg_inference_latency(ms)" not in values:
        res["error"] = "minibench reported no inference latency"
        return res
    res["latency_ms"]["mean"] = _r3(values["avg_inference_latency(ms)"])
    res["ok"] = True
    return res


# --- ExecuTorch executor_runner -----------------------------------------------------------------

_ET_LOADED = re.compile(r"Model loaded in ([0-9.]+) ms")
_ET_ITER = re.compile(r"Iteration (\d+) of (\d+): ([0-9.]+) ms")
_ET_DONE = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.]+) ms")
_ET_OUT = re.compile(r"OutputX (\d+): tensor\(sizes=\[([0-9, ]*)\]")


def parse_executor_runner(text: str, ctx: RunContext) -> dict[str, Any]:
    """executor_runner's log → result. It was run for warm-up + timed executions; per-iteration
    lines (newer builds) give the statistics of the timed ones, older builds only a total (then
    latency stays null and the total goes to "extra")."""
    import numpy as np

    from edge.metrics import latency_summary

    res = base_result(ctx, "executor_runner", "executorch")
    done = _ET_DONE.search(text)
    if done is None:
        errors = [ln.strip() for ln in text.splitlines() if ln.startswith(("E ", "F "))]
        res["error"] = "executor_runner did not finish" + (f": {errors[-1]}" if errors else "")
        return res
    loaded = _ET_LOADED.search(text)
    res["load_ms"] = _r3(float(loaded.group(1))) if loaded else None
    iters = sorted((int(i), float(ms)) for i, _, ms in _ET_ITER.findall(text))
    warm = ctx.warmup or 0
    if iters:
        res["first_run_ms"] = _r3(iters[0][1])
        timed = np.asarray([ms for i, ms in iters if i > warm])
        if timed.size:
            res["runs"] = int(timed.size)
            res["latency_ms"] = latency_summary(timed)
    else:
        res["extra"] = {"executions": int(done.group(1)), "total_ms_all_executions": float(done.group(2))}
    shapes = [[int(s) for s in dims.replace(" ", "").split(",") if s] for _, dims in sorted(
        _ET_OUT.findall(text), key=lambda t: int(t[0]))]
    if shapes:
        res["output"]["shapes"] = shapes
        res["output"]["shape_ok"] = shapes == ctx.expected_shapes if ctx.expected_shapes else None
        printed = " ".join(ln for ln in text.splitlines() if ln.startswith("OutputX"))
        # Only the first and last 100 values are printed: NaN/inf there proves non-finite,
        # their absence proves nothing (null).
        res["output"]["finite"] = False if re.search(r"\b(nan|inf)\b", printed, re.I) else None
    res["ok"] = res["output"]["shape_ok"] is not False and res["output"]["finite"] is not False
    if not res["ok"]:
        res["error"] = f"outputs: shapes {shapes} vs manifest {ctx.expected_shapes}, finite={res['output']['finite']}"
    return res


# --- Android device facts -----------------------------------------------------------------------

# One `adb shell` line that prints what the device is (key=value per line).
ANDROID_FACTS_COMMAND = (
    'echo "model=$(getprop ro.product.model)"; echo "release=$(getprop ro.build.version.release)"; '
    'echo "soc=$(getprop ro.soc.model)"; echo "platform=$(getprop ro.board.platform)"; '
    'echo "arch=$(uname -m)"; echo "cores=$(grep -c ^processor /proc/cpuinfo)"; '
    'echo "qemu=$(getprop ro.kernel.qemu)$(getprop ro.boot.qemu)"'
)


def parse_android_facts(text: str, name: str) -> dict[str, Any]:
    kv = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    kv = {k.strip(): v.strip() for k, v in kv.items()}
    cores = kv.get("cores", "")
    return {"name": name, "cpu": kv.get("soc") or kv.get("platform") or None,
            "cores": int(cores) if cores.isdigit() and int(cores) > 0 else None,
            "os": f"Android {kv['release']}" if kv.get("release") else None,
            "arch": kv.get("arch") or None, "emulated": "1" in kv.get("qemu", ""),
            **({"model": kv["model"]} if kv.get("model") else {})}
