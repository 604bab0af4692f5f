"""The report.json schema ("edge.report/1"): one row per (target, precision, method, device).

A value that could not be measured is null and the row's note says why; nothing is invented.
"""

from __future__ import annotations

import math
from typing import Any

from edge.errors import EdgeError

SCHEMA = "edge.report/1"
TOP_KEYS = ("schema", "model", "weights", "data", "host", "versions", "rows")
ROW_KEYS = ("target", "precision", "method", "artifact", "size_bytes", "export_s", "top1", "top5",
            "agreement_top1", "kl", "logit_sqnr_db", "latency_ms", "measured", "note")
LATENCY_KEYS = ("p50", "p90", "runs", "threads")
_NUMERIC = ("size_bytes", "export_s", "top1", "top5", "agreement_top1", "kl", "logit_sqnr_db")


def empty_row(target: str, precision: str, method: str) -> dict[str, Any]:
    """A row with every schema key present and nothing measured yet."""
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update(target=target, precision=precision, method=method, measured=False, note=None)
    return row


def add_note(row: dict[str, Any], note: str) -> None:
    row["note"] = note if not row.get("note") else f"{row['note']}; {note}"


def finite(v: float | None) -> float | None:
    """JSON has no infinity: an infinite SQNR (identical outputs) is stored as null plus a note."""
    return None if v is None or not math.isfinite(v) else float(v)


def validate(report: dict[str, Any]) -> None:
    """Raise EdgeError listing every way ``report`` departs from the schema."""
    problems = [f"missing key {k!r}" for k in TOP_KEYS if k not in report]
    if report.get("schema") not in (None, SCHEMA):
        problems.append(f"schema is {report.get('schema')!r}, expected {SCHEMA!r}")
    for i, row in enumerate(report.get("rows") or []):
        where = f"row {i} ({row.get('target')} {row.get('precision')})"
        problems += [f"{where}: missing {k!r}" for k in ROW_KEYS if k not in row]
        problems += [f"{where}: {k} is not a number" for k in _NUMERIC
                     if row.get(k) is not None and not isinstance(row[k], (int, float))]
        lat = row.get("latency_ms")
        if lat is not None and (not isinstance(lat, dict) or any(k not in lat for k in LATENCY_KEYS)):
            problems.append(f"{where}: latency_ms needs {', '.join(LATENCY_KEYS)}")
        if not isinstance(row.get("measured"), bool):
            problems.append(f"{where}: measured must be true or false")
        if any(row.get(k) is None for k in ("top1", "logit_sqnr_db", "latency_ms")) and not row.get("note") \
                and row.get("target") != "pytorch":
            problems.append(f"{where}: a null value needs a note saying why")
    if problems:
        raise EdgeError("report does not follow the edge.report/1 schema: " + "; ".join(problems))
