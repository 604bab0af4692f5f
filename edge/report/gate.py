"""`--fail-on "top1_drop>1.0,agreement<0.98"`: a CI gate over the report's rows."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.errors import EdgeError

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le, ">": operator.gt,
                                                   "<": operator.lt}


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * v


def _drop(key: str) -> Callable[[dict[str, Any], dict[str, Any]], float | None]:
    def get(row: dict[str, Any], ref: dict[str, Any]) -> float | None:
        if row.get(key) is None or ref.get(key) is None:
            return None
        return 100.0 * (ref[key] - row[key])

    return get


def _latency(row: dict[str, Any], ref: dict[str, Any]) -> float | None:
    return (row.get("latency_ms") or {}).get("p50")


# metric -> (value from a row and the float row, unit) ; drops are in percentage points
METRICS: dict[str, tuple[Callable[[dict[str, Any], dict[str, Any]], float | None], str]] = {
    "top1_drop": (_drop("top1"), "pt"),
    "top5_drop": (_drop("top5"), "pt"),
    "top1": (lambda r, f: _pct(r.get("top1")), "%"),
    "agreement": (lambda r, f: r.get("agreement_top1"), ""),
    "sqnr": (lambda r, f: r.get("logit_sqnr_db"), "dB"),
    "kl": (lambda r, f: r.get("kl"), ""),
    "latency_p50": (_latency, "ms"),
    "size_mb": (lambda r, f: None if r.get("size_bytes") is None else r["size_bytes"] / 1e6, "MB"),
}


@dataclass(frozen=True)
class Rule:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_rules(text: str) -> list[Rule]:
    """Parse 'metric>value,...'; a rule names the condition that FAILS the gate."""
    rules = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([a-z0-9_]+)\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:e-?[0-9]+)?)", part)
        if not m:
            raise EdgeError(f"--fail-on: cannot read {part!r}; write e.g. 'top1_drop>1.0,agreement<0.98'")
        if m.group(1) not in METRICS:
            raise EdgeError(f"--fail-on: unknown metric {m.group(1)!r} (known: {', '.join(METRICS)})")
        rules.append(Rule(m.group(1), m.group(2), float(m.group(3))))
    if not rules:
        raise EdgeError("--fail-on is empty")
    return rules


def check(rows: list[dict[str, Any]], rules: list[Rule]) -> tuple[list[str], list[str]]:
    """(failures, unchecked): each a line naming the row and rule. The float PyTorch row is the
    reference and is not gated; a null value cannot be checked and is listed as such."""
    ref = next((r for r in rows if r["target"] == "pytorch"), {})
    failures, unchecked = [], []
    for row in rows:
        if row["target"] == "pytorch":
            continue
        name = f"{row['target']} {row['precision']} {row['method']}"
        if row.get("device"):
            name += f" @{row['device']}"
        for rule in rules:
            get, unit = METRICS[rule.metric]
            value = get(row, ref)
            if value is None:
                unchecked.append(f"{name}: {rule.metric} not measured ({row.get('note') or 'no value'})")
            elif _OPS[rule.op](value, rule.threshold):
                failures.append(f"{name}: {rule.metric} = {value:.4g}{unit} breaks {rule}")
    return failures, unchecked
