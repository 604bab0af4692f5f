"""matrix.md (a grid of models × cells, then one line per cell that failed or missed a goal) and
matrix.html (the same grid in colour), both from matrix.json's dict."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from edge.io import write_bytes, write_json

MARK = {"ok": "✅", "simulated": "☑️", "warn": "⚠️", "limit": "🚧", "fail": "❌"}
COLOUR = {"ok": "#c8efc8", "simulated": "#dde8f6", "warn": "#fbe7b5", "limit": "#e4dcf2", "fail": "#f6c4c4"}


def columns(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(target, precision) in the order the cells came."""
    return list(dict.fromkeys((c["target"], c["precision"]) for c in result["cells"]))


def models(result: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(c["model"] for c in result["cells"]))


def cell_text(c: dict[str, Any]) -> str:
    """What a grid cell says: its figures, or the stage that failed."""
    if c["stage"] is not None:
        return f"{c['stage']} failed" + (" (upstream)" if c["status"] == "limit" else "")
    parts = []
    if c["precision"] == "fp32":
        db = c["sqnr_vs_float_db"]
        parts.append("sim." if not c["measured"] else "∞ dB" if db is None else f"{db:.0f} dB")
    elif c["sqnr_vs_program_db"] is not None:
        parts.append(f"{c['sqnr_vs_program_db']:.0f} dB vs fq")
    p50 = (c["latency_ms"] or {}).get("p50")
    if p50 is not None:
        parts.append(f"{p50:.2f} ms")
    if c["int8_over_fp32"] is not None:
        parts.append(f"{c['int8_over_fp32']:.2f}×")
    return " ".join(parts) or "built"


def _index(result: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(c["model"], c["target"], c["precision"]): c for c in result["cells"]}


def counts(result: dict[str, Any]) -> dict[str, int]:
    out = dict.fromkeys(MARK, 0)
    for c in result["cells"]:
        out[c["status"]] += 1
    return out


def header_lines(result: dict[str, Any]) -> list[str]:
    s, h, st = result["settings"], result["host"], result["stage_seconds"]
    n = counts(result)
    size = f"{s['input_size']} px" if s["input_size"] else "each model's default size"
    lines = [
        f"{len(models(result))} models × {len(columns(result))} target/precision cells at {size}, "
        f"weights {s['weights']}; calibration {s['calib_size']} and {s['eval_size']} held-out images from {s['calib']}",
        f"host: {h['cpu']}, {h['cores']} cores; batch 1, {s['threads']} threads, median of {s['runs']} runs",
        f"cells: {n['ok']} ok, {n['simulated']} simulated (Core ML off macOS), {n['warn']} missed a goal, "
        f"{n['limit']} held by a known upstream limit, {n['fail']} failed",
        f"took {result['seconds']} s (models and images {st['models_and_images']} s, exports and checks on "
        f"{s['workers']} processes {st['exports_and_checks']} s, timing {st['timing']} s)",
        "fp32: artifact vs eager PyTorch SQNR (goal ≥ 60 dB); int8: SQNR vs its own fake-quant program, p50, "
        "and the speed-up over the same model's fp32 artifact (goal ≥ 1, every compute op in XNNPACK)",
    ]
    if not s["trained_weights"]:
        lines.append("random weights: int8 fidelity to float is not shown (it means nothing without trained "
                     "weights); fp32 parity and int8's agreement with its own program are")
    return lines


def limit_text(c: dict[str, Any]) -> str:
    """The reason of each known upstream limit a cell hits, appended to its line ('' if none)."""
    return "".join(f" — upstream limit: {lim['why']}" + (f" ({lim['upstream']})" if lim["upstream"] else "")
                   for lim in c.get("limits") or [])


def problems(result: dict[str, Any]) -> list[str]:
    """One line per cell that failed, missed a goal or hit a known upstream limit (with its reason)."""
    out = []
    for c in result["cells"]:
        where = f"{c['model']} {c['target']} {c['precision']}"
        what = f"{c['stage']} failed: {c['reason']}" if c["stage"] is not None else c["goal"]
        if c["status"] in ("fail", "warn", "limit"):
            out.append(f"{where}: {what}{limit_text(c)}")
    return out


def to_markdown(result: dict[str, Any]) -> str:
    cols, idx = columns(result), _index(result)
    out = ["# edge matrix", ""] + [f"- {ln}" for ln in header_lines(result)] + [""]
    out.append("| model | " + " | ".join(f"{t} {p}" for t, p in cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    for m in models(result):
        row = [idx.get((m, t, p)) for t, p in cols]
        out.append(f"| {m} | " + " | ".join("—" if c is None else f"{MARK[c['status']]} {cell_text(c)}"
                                            for c in row) + " |")
    lines = problems(result)
    if lines:
        out += ["", "## Failed cells and missed goals", ""] + [f"- {ln}" for ln in lines]
    return "\n".join(out) + "\n"


def to_html(result: dict[str, Any]) -> str:
    esc, cols, idx = html.escape, columns(result), _index(result)
    head = "".join(f"<li>{esc(ln)}</li>" for ln in header_lines(result))
    ths = "<th>model</th>" + "".join(f"<th>{esc(t)}<br>{esc(p)}</th>" for t, p in cols)
    trs = []
    for m in models(result):
        tds = [f"<th>{esc(m)}</th>"]
        for t, p in cols:
            c = idx.get((m, t, p))
            if c is None:
                tds.append("<td></td>")
                continue
            why = c["reason"] if c["stage"] is not None else c["goal"] or "; ".join(c["notes"])
            why = f"{why or ''}{limit_text(c)}"
            tds.append(f'<td class="{c["status"]}" title="{esc(why or "")}">{esc(cell_text(c))}</td>')
        trs.append("<tr>" + "".join(tds) + "</tr>")
    legend = "".join(f'<span class="{k}">{esc(k)}</span> ' for k in COLOUR)
    styles = " ".join(f"td.{k}, span.{k} {{ background: {v}; }}" for k, v in COLOUR.items())
    issues = "".join(f"<li>{esc(ln)}</li>" for ln in problems(result))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge matrix</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.8rem; }}
th, td {{ border: 1px solid #bbb; padding: 0.25rem 0.4rem; text-align: center; white-space: nowrap; }}
th {{ background: #f3f3f3; }} tbody th {{ text-align: left; }} span {{ padding: 0 0.4rem; }}
{styles}
</style></head>
<body>
<h1>edge matrix</h1>
<ul>{head}</ul>
<p>{legend}(hover a cell for its reason)</p>
<table id="grid"><thead><tr>{ths}</tr></thead><tbody>{''.join(trs)}</tbody></table>
<h2>Failed cells and missed goals</h2>
<ul id="problems">{issues or '<li>none</li>'}</ul>
</body></html>
"""


def write_outputs(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """matrix.json, matrix.md and matrix.html, each written atomically."""
    paths = {"json": out / "matrix.json", "md": out / "matrix.md", "html": out / "matrix.html"}
    write_json(paths["json"], result)
    write_bytes(paths["md"], to_markdown(result).encode())
    write_bytes(paths["html"], to_html(result).encode())
    return paths
