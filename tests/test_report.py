"""`edge report` end to end on the CIFAR-10 reference model (real exports, real runtimes), its JSON
schema, the CI gate, artifact reuse, unlabelled images, a missing backend, device rows, and the HTML
in Chromium. Every report here builds and reuses its artifacts in the session store's folder
(`--artifacts`), so the files the per-target tests exported are the report's too, and each variant
writes its own output folder: no test sees another's files. Sensitivity and kept-float rows:
tests/test_report_sensitivity.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CIFAR, edge_main, require_tool

pytestmark = pytest.mark.xdist_group("reference")  # the store's reference artifacts, shared with the target tests

TARGETS = "executorch,tflite,coreml"


@pytest.fixture(scope="session")
def store_folder(artifacts) -> Path:
    return Path(artifacts.folder)


def report_args(weights: Path, out: Path, store: Path, *extra: str) -> list[str]:
    """The store's reference recipe (256 calibration images of cifar10/train, the default int8
    config), so the report and the target tests share every artifact. One process: the suite's
    two xdist workers already fill the two cores (test_gate_and_reuse runs the workers' path)."""
    return ["report", "--weights", str(weights), "--input-size", "32", "--calib", f"{CIFAR}::cifar10/train",
            "--calib-size", "256", "--data", f"{CIFAR}::cifar10/test", "--eval-size", "64", "--runs", "5",
            "--warmup", "1", "--no-sensitivity", "--artifacts", str(store), "--out", str(out), "--workers", "1",
            *extra]


@pytest.fixture(scope="session")
def report(reference_weights: Path, store_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("report")
    res = edge_main(*report_args(reference_weights, out, store_folder, "--targets", TARGETS, "--recipes", "dynamic"))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads((out / "report.json").read_text())


def test_report_rows_follow_schema(report: tuple[Path, dict], store_folder: Path) -> None:
    from edge.report.schema import ROW_KEYS, validate

    out, rep = report
    validate(rep)
    assert {"model", "weights", "data", "host", "versions", "rows"} <= rep.keys()
    assert rep["data"]["labelled"] is True and rep["data"]["images"] == 64
    keys = {(r["target"], r["precision"]) for r in rep["rows"]}
    assert keys == {("pytorch", "fp32"), ("executorch", "fp32"), ("executorch", "int8"), ("tflite", "fp32"),
                    ("tflite", "int8"), ("coreml", "fp32"), ("coreml", "int8")}
    # --recipes dynamic: a row where the target builds it, the others skipped with the reason
    dyn = [r for r in rep["rows"] if r["method"] == "dynamic"]
    assert sorted(r["target"] for r in dyn) == ["executorch", "tflite"], dyn
    assert all(r["logit_sqnr_db"] >= 25.0 and r["measured"] for r in dyn), dyn
    assert {s.split(" ")[0] for s in rep["skipped"] if "(dynamic)" in s} == {"coreml"}, rep["skipped"]
    for row in rep["rows"]:
        assert set(ROW_KEYS) <= row.keys()
    by = {(r["target"], r["precision"]): r for r in rep["rows"] if r["method"] != "dynamic"}
    ref = by[("pytorch", "fp32")]
    assert 0.15 <= ref["top1"] <= 0.5 and ref["latency_ms"]["runs"] == 5 and ref["latency_ms"]["threads"] == 2
    for t in ("executorch", "tflite"):
        fp32 = by[(t, "fp32")]
        assert fp32["measured"] is True and fp32["latency_ms"]["min"] <= fp32["latency_ms"]["p50"]
        assert fp32["latency_ms"]["p50"] <= fp32["latency_ms"]["p90"]
        assert fp32["agreement_top1"] == 1.0 and fp32["logit_sqnr_db"] > 60, fp32
        int8 = by[(t, "int8")]
        assert int8["measured"] and int8["latency_ms"]["p50"] > 0 and int8["size_bytes"] < 0.75 * fp32["size_bytes"]
        assert int8["agreement_top1"] >= 0.8 and int8["logit_sqnr_db"] >= 8.0, int8
    # stage attribution for the PT2E-quantized targets: quantization alone beside conversion+runtime
    et8 = by[("executorch", "int8")]
    q, c = et8["stages"]["quantization"], et8["stages"]["conversion_runtime"]
    assert c["logit_sqnr_db"] > et8["logit_sqnr_db"] and q["logit_sqnr_db"] >= et8["logit_sqnr_db"] - 1.0, et8
    for p in ("fp32", "int8"):  # Core ML off macOS: simulated accuracy, no latency, and the row says so
        cm = by[("coreml", p)]
        assert cm["measured"] is False and cm["latency_ms"] is None
        assert "macOS" in cm["note"] and cm["agreement_top1"] >= (1.0 if p == "fp32" else 0.8)
    assert rep["sensitivity"] == {}  # --no-sensitivity
    # one folder of artifacts for the report and the target tests (whichever built a recipe first)
    assert all(Path(r["artifact"]).is_relative_to(store_folder) for r in rep["rows"] if r["artifact"])


def test_report_markdown_and_plots(report: tuple[Path, dict]) -> None:
    import numpy as np
    from PIL import Image

    out, rep = report
    md = (out / "report.md").read_text()
    assert md.count("\n| ") >= len(rep["rows"]) + 1
    # where the time went, in the header: a figure per stage
    assert {"inputs", "work", "timing"} <= set(rep["stage_seconds"]) and "model and images" in md
    assert sum(rep["stage_seconds"].values()) <= rep["seconds"] + 0.5
    table = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert len(table) >= len(rep["rows"]) + 1  # header + a line per row (and the sensitivity tables)
    for name in ("accuracy_latency", "size"):
        with Image.open(out / "plots" / f"{name}.png") as im:
            pixels = np.asarray(im.convert("L"), dtype=np.float32)
        # a real chart: a readable size, and marks on it (not one flat colour)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400 and pixels.std() > 5, (name, pixels.shape)


def test_html_renders_in_chromium(report: tuple[Path, dict], tmp_path: Path) -> None:
    chromium = require_tool("chromium", "chromium")
    out, rep = report
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                          "--disable-background-networking", "--disable-component-update", "--no-first-run",
                          "--virtual-time-budget=5000", "--dump-dom", (out / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    dom = res.stdout
    assert res.returncode == 0, res.stderr[-2000:]
    assert dom.count("<tr") == len(rep["rows"]) + 1  # header + one per row
    assert 'data-images-loaded="2"' in dom, "every plot decoded in the browser"


def test_gate_and_reuse(report: tuple[Path, dict], reference_weights: Path, store_folder: Path,
                        tmp_path: Path) -> None:
    """A second run reuses every artifact (same recipe) and the gate decides the exit status."""
    out = tmp_path / "again"
    args = report_args(reference_weights, out, store_folder, "--targets", "executorch,tflite", "--precisions", "fp32")
    failing = edge_main(*args, "--fail-on", "agreement<1.01,latency_p50>100000", "--workers", "2")
    assert failing.returncode == 1, failing.stderr[-2000:]
    assert "gate: FAIL" in failing.stderr and "executorch fp32 float: agreement" in failing.stderr
    rep = json.loads((out / "report.json").read_text())
    rows = [r for r in rep["rows"] if r["target"] != "pytorch"]
    assert len(rows) == 2 and all(r.get("reused") for r in rows)
    assert rep["workers"] == 2  # the checks ran side by side
    passing = edge_main(*args, "--fail-on", "sqnr<-100", "--workers", "1")
    assert passing.returncode == 0 and "gate: passed" in passing.stderr, passing.stderr[-2000:]
    serial = json.loads((out / "report.json").read_text())
    assert serial["workers"] == 1
    figures = ("top1", "agreement_top1", "logit_sqnr_db", "size_bytes", "artifact")
    for a, b in zip(rep["rows"], serial["rows"], strict=True):  # workers change no figure
        assert {k: a[k] for k in figures} == {k: b[k] for k in figures}, (a, b)
    bad = edge_main(*args, "--fail-on", "accuracy>>1")
    assert bad.returncode == 2 and "--fail-on: cannot read" in bad.stderr


def test_unlabelled_images_leave_accuracy_null(reference_weights: Path, store_folder: Path, tmp_path: Path) -> None:
    """Images without labels: top-1/top-5 null with a note; agreement with float still measured."""
    from edge.data import open_image_set

    labelled = open_image_set(f"{CIFAR}::cifar10/test")
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, item in enumerate(labelled.items[:40]):
        shutil.copy(item.path, flat / f"img{i:03d}{item.path.suffix}")
    out = tmp_path / "out"
    res = edge_main("report", "--weights", reference_weights, "--input-size", "32", "--data", flat,
                    "--targets", "executorch", "--precisions", "fp32", "--runs", "2", "--artifacts", store_folder,
                    "--out", out)
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    assert rep["data"]["labelled"] is False and rep["data"]["images"] == 40
    assert [r["target"] for r in rep["rows"]] == ["pytorch", "executorch"]
    for row in rep["rows"]:
        assert row["top1"] is None and row["top5"] is None and "no labels" in row["note"]
        assert row["agreement_top1"] == 1.0
    assert rep["rows"][1]["reused"] is True  # the fp32 recipe needs no calibration set: the same file


def test_missing_backend_gives_unmeasured_row(reference_weights: Path, store_folder: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """coremltools not importable: the Core ML row says why and how to install it; the report still
    completes for the other target."""
    monkeypatch.setitem(sys.modules, "coremltools", None)
    out = tmp_path / "out"
    res = edge_main(*report_args(reference_weights, out, store_folder, "--targets", "executorch,coreml",
                                 "--precisions", "fp32"))
    assert res.returncode == 0, res.stderr[-2000:]
    rep = json.loads((out / "report.json").read_text())
    cm = next(r for r in rep["rows"] if r["target"] == "coreml")
    assert cm["measured"] is False and cm["artifact"] is None and "pip install coremltools" in cm["note"]
    assert next(r for r in rep["rows"] if r["target"] == "executorch")["measured"] is True


def test_schema_and_gate_reject_bad_input() -> None:
    from edge.errors import EdgeError
    from edge.report.gate import check, parse_rules
    from edge.report.schema import empty_row, validate

    with pytest.raises(EdgeError, match="missing key 'rows'"):
        validate({"schema": "edge.report/1", "model": {}, "weights": {}, "data": {}, "host": {}, "versions": {}})
    row = empty_row("executorch", "int8", "ptq")
    with pytest.raises(EdgeError, match="needs a note"):
        validate({"schema": "edge.report/1", "model": {}, "weights": {}, "data": {}, "host": {}, "versions": {},
                  "rows": [row]})
    with pytest.raises(EdgeError, match="unknown metric"):
        parse_rules("speed>1")
    ref = {**empty_row("pytorch", "fp32", "float"), "top1": 0.80}
    r = {**row, "top1": 0.785, "agreement_top1": 0.97, "note": "x"}
    failures, unchecked = check([ref, r], parse_rules("top1_drop>1.0,agreement<0.98,latency_p50>5"))
    assert len(failures) == 2 and "top1_drop = 1.5pt" in failures[0]
    assert len(unchecked) == 1 and "latency_p50 not measured" in unchecked[0]


def _bench(artifact: str, results: Path) -> list[dict]:
    res = edge_main("bench", artifact, "--device", "local", "--runs", "3", "--warmup", "1", "--out", results)
    assert res.returncode == 0, res.stderr[-2000:]
    from edge.bench import load_results

    return load_results(results)


def test_device_results_merge_as_rows(report: tuple[Path, dict], reference_weights: Path, store_folder: Path,
                                      tmp_path: Path) -> None:
    """`edge bench --out` results (here: the local device) become report rows with the device name,
    their accuracy taken from the host row of the same artifact."""
    out, rep = report
    artifact = next(r["artifact"] for r in rep["rows"] if r["target"] == "executorch" and r["method"] == "ptq")
    results = tmp_path / "bench.json"
    _bench(artifact, results)
    merged = tmp_path / "merged"
    res = edge_main(*report_args(reference_weights, merged, store_folder, "--targets", "executorch",
                                 "--precisions", "int8", "--device-results", str(results)))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((merged / "report.json").read_text())["rows"]
    dev = [r for r in rows if r.get("device")]
    host = next(r for r in rows if r["target"] == "executorch" and not r.get("device"))
    assert len(dev) == 1 and dev[0]["method"] == "ptq" and dev[0]["measured"] is True  # method of the host row
    assert dev[0]["agreement_top1"] == host["agreement_top1"] and "accuracy from the host run" in dev[0]["note"]
    assert dev[0]["latency_ms"]["runs"] == 3 and dev[0]["latency_ms"]["p50"] > 0
    bad = edge_main(*report_args(reference_weights, merged, store_folder, "--device-results",
                                 str(tmp_path / "missing.json")))
    assert bad.returncode == 2 and "do not exist" in bad.stderr


def test_scatter_labels_do_not_overlap() -> None:
    """Crowded rows (one model's targets and precisions at nearly one latency and accuracy): every
    label gets a box of its own inside the axes, clear of every point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import Bbox

    from edge.report.render import _pad_limits, place_labels

    points = [(10.0 + 0.05 * i, 30.0 + 0.1 * (i % 3), f"target{i % 3} {'int8' if i % 2 else 'fp32'} ptq+float{i}")
              for i in range(9)]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.scatter([p[0] for p in points], [p[1] for p in points])
    _pad_limits(ax, points)
    boxes = place_labels(fig, ax, points)
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    assert len(boxes) == len(points)
    for i, a in enumerate(boxes):
        assert frame.contains(a.x0, a.y0) and frame.contains(a.x1, a.y1), (i, a)
        for b in boxes[i + 1:]:
            assert Bbox.intersection(a, b) is None, (a, b)
    plt.close(fig)


def test_report_page_screenshot_in_chromium(report: tuple[Path, dict], tmp_path: Path) -> None:
    """The page as a person sees it: a headless Chromium screenshot of report.html is a full page
    with table and plots drawn (not blank, not a broken-image placeholder)."""
    import numpy as np
    from PIL import Image

    chromium = require_tool("chromium", "chromium")
    shot = tmp_path / "page.png"
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                          "--disable-background-networking", "--disable-component-update", "--no-first-run",
                          "--hide-scrollbars", "--window-size=1400,2400", "--virtual-time-budget=5000",
                          f"--screenshot={shot}", (report[0] / "report.html").as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    assert pixels.shape == (2400, 1400)
    ink = pixels < 128  # text, rules and plot marks
    assert ink.mean() > 0.01 and ink[1200:].mean() > 0.002, ink.mean()  # the plots below the table drew too
