"""The "edge.bench/1" result schema on the host: validation (for `edge report`, which merges these
rows by device name), the failure row for a device that could not run, and the printed table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge.bench.device_runner import RUNTIMES
from edge.errors import EdgeError
from exporters import targets

SCHEMA = "edge.bench/1"
# "executor_runner" is ExecuTorch's stock examples/portable/executor_runner run over adb.
RUNNERS = ("python", "native", "benchmark_model", "minibench", "android_demo", "executor_runner")
LATENCY_KEYS = ("p50", "p90", "min", "max", "mean")

_NUM = (int, float)


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise EdgeError(f"{where}: {msg}")


def _opt(v: Any, types: Any) -> bool:
    return v is None or (isinstance(v, types) and not isinstance(v, bool))


def validate_result(r: Any, where: str = "result") -> dict[str, Any]:
    """Check one result against the schema (docs/bench.md); a value not measured must be null."""
    _check(isinstance(r, dict), where, f"expected a JSON object, got {type(r).__name__}")
    _check(r.get("schema") == SCHEMA, where, f"schema is {r.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("artifact", "target", "runner", "threads", "warmup", "runs", "load_ms", "first_run_ms",
                "latency_ms", "peak_rss_mb", "output", "device", "ok", "error", "artifact_sha256", "precision",
                "runtime", "runtime_version"):
        _check(key in r, where, f"missing key {key!r}")
    where = f"{where} ({r.get('artifact')!r} on {(r.get('device') or {}).get('name')!r})"
    _check(isinstance(r["artifact"], str) and bool(r["artifact"]), where, "artifact must be a file name")
    _check(r["target"] is None or r["target"] in targets(), where, f"unknown target {r['target']!r}")
    _check(r["runner"] in RUNNERS, where, f"unknown runner {r['runner']!r} (known: {', '.join(RUNNERS)})")
    _check(r["runtime"] is None or r["runtime"] in RUNTIMES, where, f"unknown runtime {r['runtime']!r}")
    for key in ("artifact_sha256", "precision", "runtime_version", "error"):
        _check(r[key] is None or isinstance(r[key], str), where, f"{key} must be a string or null")
    for key in ("threads", "warmup", "runs"):
        _check(_opt(r[key], int), where, f"{key} must be an integer or null")
    for key in ("load_ms", "first_run_ms", "peak_rss_mb"):
        _check(_opt(r[key], _NUM), where, f"{key} must be a number or null")
    lat = r["latency_ms"]
    _check(isinstance(lat, dict) and all(k in lat for k in LATENCY_KEYS), where,
           f"latency_ms must hold {', '.join(LATENCY_KEYS)}")
    _check(all(_opt(lat[k], _NUM) for k in LATENCY_KEYS), where, "latency_ms values must be numbers or null")
    out = r["output"]
    _check(isinstance(out, dict) and {"shapes", "finite", "shape_ok"} <= set(out), where,
           "output must hold shapes, finite, shape_ok")
    dev = r["device"]
    _check(isinstance(dev, dict) and {"name", "cpu", "cores", "os", "arch", "emulated"} <= set(dev), where,
           "device must hold name, cpu, cores, os, arch, emulated")
    _check(isinstance(dev["name"], str) and bool(dev["name"]), where, "device.name must be a non-empty string")
    _check(_opt(dev["cores"], int), where, "device.cores must be an integer or null")
    _check(isinstance(dev["emulated"], bool), where, "device.emulated must be true or false")
    _check(isinstance(r["ok"], bool), where, "ok must be true or false")
    _check(r["ok"] or bool(r["error"]), where, "a failed result (ok: false) must say why in 'error'")
    return r


def validate_results(data: Any, where: str) -> list[dict[str, Any]]:
    _check(isinstance(data, list), where, f"expected a JSON list of {SCHEMA} results, got {type(data).__name__}")
    return [validate_result(r, f"{where}: result {i}") for i, r in enumerate(data)]


def load_results(path: Path | str) -> list[dict[str, Any]]:
    """The results `edge bench --out` wrote, validated; a clear EdgeError names what is wrong."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EdgeError(f"bench results {p} do not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgeError(f"cannot read bench results {p}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise EdgeError(f"bench results {p} are not JSON: {exc}") from exc
    return validate_results(data, str(p))


def failed_result(artifact: Path, device_name: str, error: str, runner: str, target: str | None = None,
                  precision: str | None = None, threads: int | None = None, warmup: int | None = None,
                  runs: int | None = None) -> dict[str, Any]:
    """The row for a run that never produced a result (device unreachable, host key unknown, ...):
    every measurement null, the device known only by its label."""
    return {
        "schema": SCHEMA, "artifact": artifact.name, "artifact_sha256": None, "target": target,
        "precision": precision, "runner": runner, "runtime": None, "runtime_version": None,
        "threads": threads, "warmup": warmup, "runs": runs, "load_ms": None, "first_run_ms": None,
        "latency_ms": dict.fromkeys(LATENCY_KEYS), "peak_rss_mb": None,
        "output": {"shapes": None, "finite": None, "shape_ok": None},
        "device": {"name": device_name, "cpu": None, "cores": None, "os": None, "arch": None, "emulated": False},
        "ok": False, "error": error,
    }


def _f(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(results: list[dict[str, Any]]) -> str:
    """One line per (device, artifact). Latency measured under emulation is marked: it is not a
    figure of the device being emulated."""
    head = ("device", "artifact", "runtime", "p50 ms", "p90 ms", "load ms", "first ms", "RSS MB", "status")
    rows = []
    for r in results:
        dev = r["device"]
        name = dev["name"] + (" (emulated)" if dev.get("emulated") else "")
        status = "ok" if r["ok"] else f"error: {r['error']}"
        if r["ok"] and dev.get("emulated"):
            status = "ok (emulated: not a device latency)"
        lat = r["latency_ms"]
        rows.append((name, r["artifact"], f"{r['runtime'] or '-'}/{r['runner']}", _f(lat["p50"]), _f(lat["p90"]),
                     _f(r["load_ms"], ".1f"), _f(r["first_run_ms"]), _f(r["peak_rss_mb"], ".0f"), status))
    widths = [max(len(str(x[i])) for x in (head, *rows)) for i in range(len(head) - 1)]
    lines = []
    for row in (head, *rows):
        cells = [str(c).ljust(w) if i < 3 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        lines.append("  ".join(cells + [str(row[-1])]))
    return "\n".join(lines)
