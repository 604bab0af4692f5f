"""QAT: a short distillation run on unlabelled CIFAR-10 images at 32 px, its checkpoint exported to
each target and run on the target's runtime, resume == uninterrupted, and bad input. The trainer
learns on the trained reference; the checkpoints' plumbing (export, lowering, the report row, resume)
runs on timm's small test net, since it does not depend on the network and the reference's int8
lowering alone would take minutes of the suite's budget. Small on purpose: a few steps on a few
dozen images; bench_qat.py measures the gains on the reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import CIFAR, edge_main

from edge.errors import EdgeError
from edge.models import ModelSpec, load_model
from quantize import PTQConfig, QATConfig

pytestmark = pytest.mark.xdist_group("qat")

STEPS = 4


def _config(**kw: object) -> QATConfig:
    base = {"ptq": PTQConfig(calib_size=16, calib_batch=8), "steps": STEPS, "lr": 1e-4, "batch_size": 8,
            "freeze_observers_after": 3, "train_images": 40, "eval_images": 8, "ce_weight": 0.5}
    return QATConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 CIFAR-10 training images copied into one flat folder: no labels, as most users have."""
    from edge.data import open_image_set

    items, _ = open_image_set(f"{CIFAR}::cifar10/train").split(48, 7)
    folder = tmp_path_factory.mktemp("unlabelled")
    for i, it in enumerate(items.items):
        shutil.copy(it.path, folder / f"img{i:03d}{it.path.suffix}")
    return folder


@pytest.fixture(scope="session")
def ref_model(reference_weights: Path):
    return load_model(ModelSpec(weights=str(reference_weights), input_size=32))


@pytest.fixture(scope="session")
def tiny_model():
    """timm's small test net, seeded random weights, 32 px (its 1000-class head kept)."""
    return load_model(ModelSpec(name="test_efficientnet", weights="random", input_size=32))


TINY = ["--model", "test_efficientnet", "--weights", "random", "--input-size", "32"]


@pytest.fixture(scope="session")
def ckpts(tiny_model, unlabelled: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short QAT run per target (torch threads 1: fastest on a busy 2-core machine)."""
    import torch

    from edge.qat import run_qat

    out = tmp_path_factory.mktemp("qat")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        paths = {}
        for target in ("executorch", "coreml", "tflite"):
            paths[target] = out / f"{target}.pt"
            res = run_qat(tiny_model, target, str(unlabelled), paths[target], _config(), save_every=0)
            assert res["step"] == STEPS and res["labels_used"] is False
    finally:
        torch.set_num_threads(threads)
    return paths


def _fixed_set_kl(prepared, teacher, images) -> float:
    import torch

    from quantize.qat import distill_loss, to_inference

    with torch.no_grad():
        return float(distill_loss(to_inference(prepared)(images), teacher(images), None, _config()))


def test_distillation_loss_decreases(ref_model, unlabelled: Path) -> None:
    """Distillation alone (no labels): the KL between the fake-quant model and float, on the
    training images without augmentation, falls from its PTQ starting point."""
    import copy

    import torch

    from edge.data import load_batch, open_image_set
    from edge.qat import target_scheme
    from quantize.qat import init_ranges, new_state, prepare_qat, train

    images = load_batch(open_image_set(unlabelled).items, ref_model.transform()).images[:32]
    cfg = _config(steps=8, freeze_observers_after=0, lr=2e-4, ce_weight=0.0)
    quantizer, ptq = target_scheme("executorch", ref_model.module, cfg.ptq)
    prepared = prepare_qat(ref_model.module, ref_model.example_input(2), quantizer, ptq)
    init_ranges(prepared, images, cfg)
    teacher = ref_model.module.eval()
    before = _fixed_set_kl(copy.deepcopy(prepared), teacher, images)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state = train(prepared, teacher, images, None, cfg, new_state(prepared, cfg), desc=None)
    finally:
        torch.set_num_threads(threads)
    after = _fixed_set_kl(prepared, teacher, images)
    assert len(state.history) == 8
    # a trainer that does not learn (no gradient, lr 0) stays at 1.0x
    assert after < 0.95 * before, (before, after)


def test_resume_equals_uninterrupted(tiny_model, unlabelled: Path, ckpts: dict[str, Path], tmp_path: Path) -> None:
    """Stop at step 2, resume to 4: the same weights, ranges and optimizer state as 4 in one go."""
    import torch

    from edge.qat import run_qat
    from quantize.qat import read_checkpoint

    part = tmp_path / "part.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = run_qat(tiny_model, "executorch", str(unlabelled), part, _config(), until=2, save_every=0)
        assert first["step"] == 2 and read_checkpoint(part)["step"] == 2
        with pytest.raises(EdgeError, match="--resume"):
            run_qat(tiny_model, "executorch", str(unlabelled), part, _config())
        with pytest.raises(EdgeError, match="other settings"):
            run_qat(tiny_model, "executorch", str(unlabelled), part, _config(lr=3e-4), resume=True)
        run_qat(tiny_model, "executorch", str(unlabelled), part, _config(), resume=True, save_every=0)
    finally:
        torch.set_num_threads(threads)
    a, b = read_checkpoint(ckpts["executorch"]), read_checkpoint(part)
    assert a["step"] == b["step"] == STEPS
    assert a["history"] == b["history"]
    assert a["model_state"].keys() == b["model_state"].keys()
    for k, v in a["model_state"].items():
        assert torch.equal(v, b["model_state"][k]), k
    assert torch.equal(a["generator_state"], b["generator_state"])


def test_executorch_pte_from_checkpoint_runs(unlabelled: Path, ckpts: dict[str, Path], tmp_path: Path) -> None:
    """`edge export executorch --qat CKPT`: the .pte runs on ExecuTorch and is compared with the QAT
    model it came from; the manifest says qat and names the checkpoint."""
    from edge.io import sha256_path

    res = edge_main("export", "executorch", "--precision", "int8", *TINY, "--qat", ckpts["executorch"],
                    "--calib", unlabelled, "--calib-size", "8", "--eval-size", "16", "--out", tmp_path, "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(res.stdout)
    man = json.loads(Path(rep["manifest"]).read_text())
    assert man["method"] == "qat" and man["qat_checkpoint_sha256"] == sha256_path(ckpts["executorch"])
    assert man["quantization"]["steps"] == STEPS and man["quantization"]["ptq"]["float_head"] is True
    assert man["delegation"]["non_delegated_by_op"].keys() <= {"getitem"}
    par = rep["parity"]
    assert par["measured"] is True and par["images"] == 16
    # the deployed .pte follows the QAT model it came from (XNNPACK's requantization rounds
    # differently by an LSB now and then); a broken lowering lands near 0 dB
    assert par["vs_quantized_program"]["sqnr_db"] > 20.0, par


@pytest.mark.parametrize("target", ["coreml", "executorch"])
def test_batchnorm_counters_are_not_quantized(target: str) -> None:
    """Train-mode BatchNorm (--freeze-bn-after > 0) trains on every target: the export's int64
    ``num_batches_tracked += 1`` is dropped before the quantizer sees it (Core ML's quantizer
    put a fake-quant on it, which raised, and its converted program mutated buffers)."""
    import torch

    from edge.qat import target_scheme
    from quantize.qat import prepare_qat, set_phase, to_inference, unfuse_float_conv_bn

    pt2e = pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e")

    # any BatchNorm network shows it: timm's small test net keeps the test quick
    model = load_model(ModelSpec(name="test_efficientnet", weights="random", input_size=32, num_classes=10))
    quantizer, ptq = target_scheme(target, model.module, PTQConfig())
    prepared = prepare_qat(model.module, model.example_input(2), quantizer, ptq)
    assert not [n for n in prepared.graph.nodes if "num_batches_tracked" in str(n.target)
                and any(u.target is torch.ops.aten.add_.Tensor for u in n.users)]
    set_phase(prepared, 0, QATConfig(freeze_bn_after=2, freeze_observers_after=2))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out = prepared(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    # convert_qat's last step, checked on its own: QAT's conv-BN fusion is undone where the conv
    # stayed float (the head's conv_head + bn2), exactly, so its weight is a parameter again, which
    # XNNPACK needs (the .pte test checks the delegation)
    converted = pt2e.convert_pt2e(to_inference(prepared))
    with torch.no_grad():
        before = converted(x)
        assert unfuse_float_conv_bn(converted) == 1
        torch.testing.assert_close(converted(x), before, rtol=1e-5, atol=1e-5)
    convs = [n for n in converted.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert all(n.args[1].op == "get_attr" or "dequantize" in str(n.args[1].target) for n in convs)
    exported = torch.export.export(converted, (model.example_input(1),), strict=False)
    assert not exported.run_decompositions({}).graph_signature.buffers_to_mutate


def test_report_row_from_a_coreml_checkpoint(tiny_model, unlabelled: Path, ckpts: dict[str, Path],
                                             tmp_path: Path) -> None:
    """`edge report --qat CKPT` with Core ML's checkpoint: W8A8 from the QAT model converts, its spec
    holds the quantize/dequantize ops, and the row beside float says its figures are simulated off
    macOS (no latency)."""
    out = tmp_path / "report"
    res = edge_main("report", *TINY, "--calib", unlabelled, "--calib-size", "16", "--eval-size", "16",
                    "--targets", "coreml", "--precisions", "", "--no-sensitivity", "--runs", "2",
                    "--qat", ckpts["coreml"], "--out", out)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["float", "qat"]  # --precisions '': float and the QAT row only
    qat = rows[1]
    assert qat["target"] == "coreml" and qat["precision"] == "int8" and qat["agreement_top1"] is not None
    if not qat["measured"]:
        assert qat["latency_ms"] is None and "macOS" in qat["note"]
    man = json.loads(Path(qat["artifact"] + ".json").read_text())
    import torch

    from quantize.ptq import head_modules

    ops = man["spec"]["op_counts"]
    modules = dict(tiny_model.module.named_modules())
    head = set(head_modules(tiny_model.module))
    body = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d) and not any(
        n == h or n.startswith(h + ".") for h in head)]
    assert ops.get("quantize", 0) >= len(body) and ops.get("dequantize", 0) >= len(body), ops
    int8 = sum(v for k, v in man["spec"]["weights"].items() if k.endswith(":int8"))
    assert int8 >= len(body), man["spec"]["weights"]  # every body conv's trained weights in int8
    assert man["method"] == "qat" and man["quantization"]["steps"] == STEPS


def test_tflite_from_checkpoint_runs_on_litert(tiny_model, unlabelled: Path, ckpts: dict[str, Path],
                                               tmp_path: Path) -> None:
    """TFLite int8 from the QAT model (the converter calibrates the QAT-adapted
    float weights): runs on LiteRT and is compared with the QAT fake-quant model."""
    from edge.pipeline import export_and_verify, load_inputs
    from edge.qat import load_qat_program

    inputs = load_inputs(tiny_model.spec, str(unlabelled), 16, eval_size=16)
    prog = load_qat_program(ckpts["tflite"], inputs.model, "tflite")
    # XNNPACK's scheme, with the head as the TFLite exporter applies it (float by default, as in its PTQ)
    assert prog.config.ptq.float_head is True and prog.quantizer == "xnnpack"
    rep = export_and_verify("tflite", inputs, "int8", tmp_path, qat=prog)
    par = rep["parity"]
    assert par["measured"] is True and par["vs_quantized_program"] is not None
    # the converter's own calibration lands near, not on, the QAT scales (docs/qat.md); a broken
    # conversion (BatchNorm applied twice, say) gives a negative SQNR here
    assert par["vs_quantized_program"]["sqnr_db"] > 0.0, par
    man = json.loads(Path(rep["manifest"]).read_text())
    assert man["method"] == "qat" and man["delegation"]["non_delegated_ops"] == 0
    # calibrated as TFLite's PTQ is (percentile ranges), not with the converter's min/max
    assert man["converter_observer"] == "percentile", man


def test_bad_input_fails_clearly(tiny_model, unlabelled: Path, ckpts: dict[str, Path], tmp_path: Path) -> None:
    from edge.qat import load_qat_program, run_qat

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgeError, match="no images found"):
        run_qat(tiny_model, "executorch", str(empty), tmp_path / "x.pt", _config())
    with pytest.raises(EdgeError, match="trained for target executorch"):
        load_qat_program(ckpts["executorch"], tiny_model, "coreml")
    other = load_model(ModelSpec(name="test_efficientnet", weights="random", input_size=32, seed=1))
    with pytest.raises(EdgeError, match="weights_sha256"):
        load_qat_program(ckpts["executorch"], other, "executorch")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EdgeError, match="not a readable QAT checkpoint"):
        load_qat_program(junk, tiny_model)
    # the CLI: one line, exit 2
    res = edge_main("export", "coreml", "--precision", "int8", *TINY, "--qat", str(ckpts["executorch"]),
                    "--calib", str(unlabelled), "--out", str(tmp_path))
    assert res.returncode == 2
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("edge: error:")]
    assert len(errors) == 1 and "trained for target executorch" in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    res = edge_main("qat", *TINY, "--target", "executorch",
                "--data", str(empty), "--steps", "2", "--out", str(tmp_path / "y.pt"))
    assert res.returncode == 2 and "edge: error: no images found" in res.stderr, res.stderr[-2000:]
