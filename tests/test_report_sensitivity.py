"""`edge report`'s per-layer sensitivity and its kept-float rows, and device rows matched to host rows
by content, on timm's small test net (the mechanics do not depend on the network; the figures of
fbnetv3_b are benchmarks/bench_report.py's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import IMAGENET, edge_main

pytestmark = pytest.mark.xdist_group("tiny")


@pytest.fixture(scope="module")
def sens_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sens")
    res = edge_main("report", "--model", "test_efficientnet", "--weights", "random", "--input-size", "32",
                    "--calib", IMAGENET, "--calib-size", "16", "--eval-size", "16", "--targets", "executorch,coreml",
                    "--precisions", "int8", "--keep-float-top", "1", "--runs", "3", "--warmup", "1",
                    "--workers", "1", "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, json.loads((out / "report.json").read_text())


def test_sensitivity_ranks_every_unit_per_quantizer(sens_report: tuple[Path, dict]) -> None:
    out, rep = sens_report
    sens = rep["sensitivity"]
    assert set(sens) == {"xnnpack", "coreml"}
    assert sens["xnnpack"]["targets"] == ["executorch"] and sens["coreml"]["targets"] == ["coreml"]
    layers = sens["xnnpack"]["layers"]
    assert len(layers) >= 5 and layers == sorted(layers, key=lambda r: r["sqnr_db"])
    assert {"conv_stem", "blocks.0.0"} <= {r["layer"] for r in layers}  # named from the model, not a list
    # one unit alone in int8 costs less than the whole network in int8
    et8 = next(r for r in rep["rows"] if r["target"] == "executorch" and r["method"] == "ptq")
    assert layers[-1]["sqnr_db"] > et8["stages"]["quantization"]["logit_sqnr_db"]
    md = (out / "report.md").read_text()
    assert "Per-layer sensitivity" in md
    for name in ("sensitivity_xnnpack", "sensitivity_coreml"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 5_000


def test_keep_float_rows_leave_the_most_sensitive_units_float(sens_report: tuple[Path, dict]) -> None:
    _, rep = sens_report
    kept = [r for r in rep["rows"] if r["method"] == "ptq+float1"]
    assert {r["target"] for r in kept} == {"executorch", "coreml"}
    worst = rep["sensitivity"]["xnnpack"]["layers"][0]["layer"]
    et_kept = next(r for r in kept if r["target"] == "executorch")
    et8 = next(r for r in rep["rows"] if r["target"] == "executorch" and r["method"] == "ptq")
    assert worst in et_kept["note"] and et_kept["measured"] is True
    assert et_kept["artifact"] != et8["artifact"] and et_kept["size_bytes"] > et8["size_bytes"]
    man = json.loads(Path(et_kept["artifact"] + ".json").read_text())
    assert any(p.startswith(worst) for p in man["quantization"]["keep_float"]), man["quantization"]


def _bench(artifact: str, results: Path) -> list[dict]:
    from edge.bench import load_results

    res = edge_main("bench", artifact, "--device", "local", "--runs", "3", "--warmup", "1", "--out", results)
    assert res.returncode == 0, res.stderr[-2000:]
    return load_results(results)


def test_device_rows_match_host_rows_by_content_not_name(sens_report: tuple[Path, dict], tmp_path: Path) -> None:
    """`ptq` and `ptq+float1` .pte files share a file name (in other folders): each device row takes
    the figures of the host row of the very same bytes."""
    from edge.report.devices import device_rows

    _, rep = sens_report
    et = {r["method"]: r for r in rep["rows"] if r["target"] == "executorch"}
    assert Path(et["ptq"]["artifact"]).name == Path(et["ptq+float1"]["artifact"]).name
    assert et["ptq"]["logit_sqnr_db"] != et["ptq+float1"]["logit_sqnr_db"]
    results = _bench(et["ptq+float1"]["artifact"], tmp_path / "a.json") + _bench(et["ptq"]["artifact"],
                                                                                  tmp_path / "b.json")
    rows = device_rows(results, rep["rows"])
    assert [r["method"] for r in rows] == ["ptq+float1", "ptq"]
    for row in rows:
        assert row["logit_sqnr_db"] == et[row["method"]]["logit_sqnr_db"], row


def test_flipped_outputs_are_full_forward_passes_bit_for_bit() -> None:
    """Sensitivity and auto re-run only the graph after a unit's first switch: each group's outputs
    must be exactly those of a whole forward pass with that group flipped (same batches), from
    either base state (all float: sensitivity; all int8: auto)."""
    import numpy as np
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from edge.models import ModelSpec, load_model
    from quantize.config import PTQConfig
    from quantize.fake_quant import flipped_outputs, in_unit, install, outputs
    from quantize.ptq import calibrate, export_for_quantization, units
    from quantize.quantizers import make_quantizer

    model = load_model(ModelSpec(name="test_efficientnet", weights="random", input_size=32))
    images = torch.from_numpy(np.random.default_rng(0).standard_normal((12, 3, 32, 32)).astype(np.float32))
    cfg = PTQConfig(float_head=False)
    prepared = prepare_pt2e(export_for_quantization(model.module, model.example_input()).module(),
                            make_quantizer("xnnpack", cfg))
    calibrate(prepared, images, cfg.calib_batch)
    switches = install(prepared)
    groups = [[sw for sw in switches.items if in_unit(sw.path, u)] for u in units(model.module)]
    groups.append([])  # a group of nothing: the base program's outputs
    assert len(groups) >= 6 and all(groups[:-1])
    for base in (False, True):
        switches.set(base)
        got = flipped_outputs(switches, groups, images, batch=8)
        assert [sw.on for sw in switches.items] == [base] * len(switches.items)  # put back as found
        for group, outs in zip(groups, got, strict=True):
            switches.set(not base, group)
            want = outputs(prepared, images, batch=8)
            switches.set(base, group)
            assert len(outs) == len(want)
            for a, b in zip(outs, want, strict=True):
                np.testing.assert_array_equal(a, b)
        assert not np.array_equal(got[0][0], got[-1][0])  # a flip does change the output
