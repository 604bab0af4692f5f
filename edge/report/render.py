"""report.md (the table) and report.html (the table plus plots), both from report.json's dict."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from edge._deps import has, require
from edge.io import write_bytes

COLUMNS: list[tuple[str, str]] = [
    ("target", "target"), ("precision", "precision"), ("method", "method"), ("device", "device"),
    ("size", "size MB"), ("top1", "top-1"), ("top5", "top-5"), ("agreement", "agree"), ("kl", "KL"),
    ("sqnr", "SQNR dB"), ("img_sqnr", "per-image median dB"), ("worst", "worst 1 % hold"),
    ("q_sqnr", "quant. alone dB"), ("c_sqnr", "conv.+runtime dB"),
    ("p50", "p50 ms"), ("p90", "p90 ms"), ("speedup", "vs float"), ("export", "export s"),
    ("measured", "measured"), ("note", "note"),
]


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def cells(row: dict[str, Any], float_p50: float | None) -> dict[str, str]:
    lat = row.get("latency_ms") or {}
    stages = row.get("stages") or {}
    p50 = lat.get("p50")
    return {
        "target": row["target"], "precision": row["precision"], "method": row["method"],
        "device": row.get("device") or "host",
        "size": _num(None if row.get("size_bytes") is None else row["size_bytes"] / 1e6, ".2f"),
        "top1": _pct(row.get("top1")), "top5": _pct(row.get("top5")),
        "agreement": _pct(row.get("agreement_top1")), "kl": _num(row.get("kl"), ".4f"),
        "sqnr": _num(row.get("logit_sqnr_db"), ".1f"),
        "img_sqnr": _num(row.get("image_sqnr_db_median"), ".1f"),
        "worst": _pct(row.get("error_share_worst_1pct")),
        "q_sqnr": _num((stages.get("quantization") or {}).get("logit_sqnr_db"), ".1f"),
        "c_sqnr": _num((stages.get("conversion_runtime") or {}).get("logit_sqnr_db"), ".1f"),
        "p50": _num(p50, ".2f"), "p90": _num(lat.get("p90"), ".2f"),
        "speedup": "—" if not p50 or not float_p50 or row.get("device") else f"{float_p50 / p50:.2f}×",
        "export": _num(row.get("export_s"), ".1f") + (" (reused)" if row.get("reused") else ""),
        "measured": "yes" if row["measured"] else "no (simulated)" if row.get("agreement_top1") is not None
        or row.get("logit_sqnr_db") is not None else "no",
        "note": row.get("note") or "",
    }


def _float_p50(report: dict[str, Any]) -> float | None:
    ref = next((r for r in report["rows"] if r["target"] == "pytorch"), None)
    return ((ref or {}).get("latency_ms") or {}).get("p50")


def _stages(report: dict[str, Any]) -> str:
    """Where the report's time went: the header's per-stage seconds."""
    st, workers = report.get("stage_seconds") or {}, report.get("workers") or 1
    names = {"inputs": "model and images",
             "work": "exports, checks and sensitivity" + (f" on {workers} processes" if workers > 1 else ""),
             "timing": "timing", "qat_and_keep_float": "QAT and kept-float rows"}
    parts = [f"{names.get(k, k)} {v} s" for k, v in st.items() if v or k in ("work", "timing")]
    return f" ({', '.join(parts)})" if parts else ""


def header_lines(report: dict[str, Any]) -> list[str]:
    m, w, d, h = report["model"], report["weights"], report["data"], report["host"]
    s = report["settings"]
    lines = [
        f"model {m['name']} ({m['mode']}, input {'x'.join(map(str, m['input_shape']))})",
        f"weights: {w['source']}" + "".join(f" — {n}" for n in w.get("notes") or []),
        f"evaluated on {d['images']} images from {d['path']}"
        + ("" if d["labelled"] else " (no labels: top-1/top-5 not measured)"),
        f"host: {h['cpu']}, {h['cores']} cores, {h['os']}; batch 1, {s['threads']} threads, "
        f"median of {s['runs']} runs after {s['warmup']} warm-up",
        f"report took {report['seconds']} s" + _stages(report),
    ]
    if str(w["source"]).startswith("random"):
        lines.insert(2, "WARNING: random weights — accuracy figures say nothing about the model; "
                        "fidelity to float still holds for these weights only")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    fp = _float_p50(report)
    out = [f"# edge report: {report['model']['name']}", ""] + [f"- {ln}" for ln in header_lines(report)] + [""]
    out.append("| " + " | ".join(t for _, t in COLUMNS) + " |")
    out.append("|" + "---|" * len(COLUMNS))
    for row in report["rows"]:
        c = cells(row, fp)
        out.append("| " + " | ".join(c[k].replace("|", "/") for k, _ in COLUMNS) + " |")
    out += ["", "*quant. alone*: the fake-quant PyTorch program vs float (what quantization itself costs); "
            "*conv.+runtime*: the artifact vs that program (what conversion and the runtime's kernels cost). "
            "*SQNR* pools every image's error, so the images with the largest errors dominate it; "
            "*per-image median* is the typical image's SQNR and *worst 1 % hold* the share of the squared "
            "error in the worst 1 % of images: a low SQNR with a high median is a few outlier images."]
    for q, info in (report.get("sensitivity") or {}).items():
        out += ["", f"## Per-layer sensitivity ({q} quantizer: {', '.join(info['targets'])})", "",
                "Output SQNR vs float with only that layer quantized, worst first.", "",
                "| layer | SQNR dB | agreement |", "|---|---|---|"]
        out += [f"| {r['layer']} | {r['sqnr_db']:.1f} | {_pct(r['agreement_top1'])} |" for r in info["layers"][:15]]
    return "\n".join(out) + "\n"


# -- plots ----------------------------------------------------------------------------------------
def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _pad_limits(ax: Any, points: list[tuple[float, float, str]]) -> None:
    """Room around the points for their labels (a flat line of points gets a visible y range)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xr, yr = max(xs) - min(xs) or max(xs) or 1.0, max(ys) - min(ys)
    yr = max(yr, 4.0)  # a few points of accuracy at least, so near-equal rows do not look identical
    ax.set_xlim(min(xs) - 0.25 * xr, max(xs) + 0.6 * xr)
    ax.set_ylim(min(ys) - 0.35 * yr, max(ys) + 0.35 * yr)


def place_labels(fig: Any, ax: Any, points: list[tuple[float, float, str]]) -> list[Any]:
    """Annotate each point with its label where the label's box overlaps no other label and no
    point (greedy over a spiral of offsets, with a leader line when moved away); returns the
    labels' boxes in display pixels. Why: rows of one model sit close together (fp32 and int8
    latencies differ little), and labels drawn at a fixed offset pile on one another."""
    renderer = fig.canvas.get_renderer()
    marks = [ax.transData.transform((x, y)) for x, y, _ in points]
    taken: list[Any] = []
    offsets = [(dx * r, dy * r) for r in (6, 16, 28, 42, 58) for dx, dy in
               ((1, 0.6), (1, -1.2), (-1, 0.6), (-1, -1.2), (0, 1.4), (0, -2.0), (1.6, 0), (-1.6, 0))]
    from matplotlib.transforms import Bbox

    for (x, y, text), _ in zip(points, marks, strict=True):
        chosen = None
        for dx, dy in offsets:
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8,
                              ha="left" if dx >= 0 else "right", va="center")
            box = ann.get_window_extent(renderer).expanded(1.05, 1.15)
            hits_mark = any(box.contains(mx, my) for mx, my in marks)
            inside = ax.get_window_extent(renderer).contains(box.x0, box.y0) and \
                ax.get_window_extent(renderer).contains(box.x1, box.y1)
            if inside and not hits_mark and not any(Bbox.intersection(box, t) is not None for t in taken):
                chosen = (ann, box, (dx, dy))
                break
            ann.remove()
        if chosen is None:  # no free spot: the last candidate, so the label is still shown
            dx, dy = offsets[-1]
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8)
            chosen = (ann, ann.get_window_extent(renderer), (dx, dy))
        ann, box, (dx, dy) = chosen
        if abs(dx) > 10 or abs(dy) > 10:  # moved away: a leader line back to its point
            ax.annotate("", (x, y), textcoords="offset points", xytext=(dx, dy),
                        arrowprops={"arrowstyle": "-", "color": "#999", "lw": 0.6})
        taken.append(box)
    return taken


def plots(report: dict[str, Any]) -> dict[str, bytes]:
    """name -> PNG bytes: accuracy vs latency, size, per-layer sensitivity."""
    require("matplotlib", "the report's plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if not r.get("device")]
    out: dict[str, bytes] = {}
    labelled = report["data"]["labelled"] and any(r.get("top1") is not None for r in rows)
    ykey, ylabel = ("top1", "top-1 accuracy (%)") if labelled else ("agreement_top1", "top-1 agreement with float (%)")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    targets = sorted({r["target"] for r in rows})
    points: list[tuple[float, float, str]] = []
    for i, t in enumerate(targets):
        pts = [(r["latency_ms"]["p50"], 100 * r[ykey], f"{t} {r['precision']} {r['method']}") for r in rows
               if r["target"] == t and r.get("latency_ms") and r.get(ykey) is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=60, label=t, marker="osD^v"[i % 5], zorder=3)
            points += pts
    if points:
        _pad_limits(ax, points)
        place_labels(fig, ax, points)
    missing = sorted({f"{r['target']} {r['precision']}" for r in rows if not r.get("latency_ms")})
    ax.set_xlabel("latency p50 (ms, batch 1, this host)")
    ax.set_ylabel(ylabel)
    ax.set_title("accuracy vs latency" + (f"\n(no latency here: {', '.join(missing)})" if missing else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out["accuracy_latency"] = _png(fig)
    plt.close(fig)

    sized = [r for r in rows if r.get("size_bytes")]
    if sized:
        fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(sized) + 1))
        names = [f"{r['target']} {r['precision']} {r['method']}" for r in sized]
        ax.barh(names, [r["size_bytes"] / 1e6 for r in sized], color="#4c72b0")
        ax.invert_yaxis()
        ax.set_xlabel("artifact size (MB)")
        ax.set_title("size", fontsize=10)
        out["size"] = _png(fig)
        plt.close(fig)

    for q, info in (report.get("sensitivity") or {}).items():
        layers = info["layers"]
        fig, ax = plt.subplots(figsize=(6.5, 0.22 * len(layers) + 1))
        worst = sorted(layers, key=lambda r: r["sqnr_db"])
        ax.barh([r["layer"] for r in worst], [r["sqnr_db"] for r in worst], color="#dd8452")
        ax.invert_yaxis()
        ax.set_xlabel("output SQNR vs float (dB) with only this layer int8 — lower is more sensitive")
        ax.set_title(f"per-layer sensitivity, {q} quantizer", fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
        out[f"sensitivity_{q}"] = _png(fig)
        plt.close(fig)
    return out


def to_html(report: dict[str, Any], images: dict[str, bytes]) -> str:
    fp = _float_p50(report)
    esc = html.escape
    head = "".join(f"<li>{esc(ln)}</li>" for ln in header_lines(report))
    ths = "".join(f"<th>{esc(t)}</th>" for _, t in COLUMNS)
    trs = []
    for row in report["rows"]:
        c = cells(row, fp)
        cls = "ref" if row["target"] == "pytorch" else ("sim" if not row["measured"] else "")
        trs.append(f'<tr class="{cls}">' + "".join(f"<td>{esc(c[k])}</td>" for k, _ in COLUMNS) + "</tr>")
    figs = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{esc(name.replace('_', ' '))}</figcaption></figure>" for name, png in images.items())
    if not images:
        figs = "<p>No plots: matplotlib is not installed (pip install 'edge[report]').</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge report: {esc(report['model']['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.45rem; text-align: right; }}
td:nth-child(-n+4), td:last-child {{ text-align: left; }}
tr.ref {{ background: #eef4ff; }} tr.sim {{ color: #777; font-style: italic; }}
figure {{ display: inline-block; margin: 1rem 1rem 0 0; vertical-align: top; }}
</style></head>
<body>
<h1>edge report: {esc(report['model']['name'])}</h1>
<ul>{head}</ul>
<table id="results"><thead><tr>{ths}</tr></thead><tbody>{''.join(trs)}</tbody></table>
<p><em>quant. alone</em>: the fake-quant PyTorch program vs float (what quantization itself costs);
<em>conv.+runtime</em>: the artifact vs that program (what conversion and the runtime's kernels cost).
<em>SQNR</em> pools every image's error, so the images with the largest errors dominate it;
<em>per-image median</em> is the typical image's SQNR and <em>worst 1 % hold</em> the share of the squared
error in the worst 1 % of images: a low SQNR with a high median is a few outlier images.
Grey rows were not run on their real runtime here; their figures are simulated, and say so.</p>
<section id="plots">{figs}</section>
<script>/* marks how many plots decoded, for a headless-browser check */
window.addEventListener("load", () => {{
  document.body.dataset.imagesLoaded = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
}});</script>
</body></html>
"""


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """report.json, report.md, report.html (+ plots/*.png), each written atomically."""
    from edge.io import write_json

    images = plots(report) if has("matplotlib") else {}
    for name, png in images.items():
        write_bytes(out / "plots" / f"{name}.png", png)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    write_json(paths["json"], report)
    write_bytes(paths["md"], to_markdown(report).encode())
    write_bytes(paths["html"], to_html(report, images).encode())
    return paths
