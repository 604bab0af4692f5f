"""Bad input, one table: every case exits 2 with one `edge: error:` line naming the problem, no
traceback, and nothing under --out. Each case runs in-process on timm's tiny test net, and each
fails before any export (most before torch is even imported: see the subprocess test below)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IMAGENET, ROOT, assert_one_line_error, edge_main

TINY = ["--model", "test_efficientnet", "--weights", "random", "--input-size", "32"]
EXPORT = ["export", "executorch", *TINY, "--out", "{out}"]
INT8 = [*EXPORT, "--precision", "int8", "--calib", "{images}", "--calib-size", "2"]
QAT = ["qat", *TINY, "--target", "executorch", "--data", "{images}", "--steps", "2"]
REPORT = ["report", *TINY, "--targets", "executorch", "--out", "{out}"]
FINETUNE = ["finetune", *TINY, "--data", "{images}"]
HEAVY = ("torch", "timm", "executorch", "tensorflow", "coremltools")

# (case id, arguments, what the one error line must contain). Placeholders: {out} the --out folder
# (must never appear), {images} three real images, {file} a regular file, {dir} an empty folder.
CASES = [
    # exits 0 with a wrong artifact before
    ("num-classes-negative", [*EXPORT, "--num-classes", "-1"], "--num-classes must be at least 1, got -1"),
    ("num-classes-zero", [*EXPORT, "--num-classes", "0"], "--num-classes must be at least 1"),
    ("input-size-zero", [*EXPORT, "--input-size", "0"], "--input-size must be at least 1, got 0"),
    ("keep-float-matches-nothing", [*INT8, "--keep-float", "no_such_block.*"], "matches no module"),
    ("dynamic-on-fp32", [*EXPORT, "--activations", "dynamic"], "--activations dynamic applies to int8"),
    ("float-depthwise-on-fp32", [*EXPORT, "--float-depthwise"], "--float-depthwise applies to int8"),
    ("dynamic-tflite-int8-io", ["export", "tflite", *TINY, "--out", "{out}", "--precision", "int8", "--calib",
                                "{images}", "--calib-size", "2", "--activations", "dynamic", "--io", "int8"],
     "takes neither --io int8"),
    ("dynamic-tflite-onnx2tf", ["export", "tflite", *TINY, "--out", "{out}", "--precision", "int8", "--calib",
                                "{images}", "--calib-size", "2", "--activations", "dynamic", "--int8-lowering",
                                "onnx2tf"], "takes neither --io int8 nor --int8-lowering onnx2tf"),
    ("dynamic-coreml", ["export", "coreml", *TINY, "--out", "{out}", "--precision", "int8", "--calib", "{images}",
                        "--calib-size", "2", "--activations", "dynamic"], "use --precision w8"),
    ("dynamic-with-an-observer", [*INT8, "--activations", "dynamic", "--observer", "minmax"], "does not apply"),
    ("dynamic-with-auto", [*INT8, "--activations", "dynamic", "--target-agreement", "0.9",
                           "--auto-search-images", "8"], "has no static ranges to trade"),
    # the accuracy-controlled mode (quantize/auto.py): refused before any model is loaded
    ("auto-target-out-of-range", [*INT8, "--target-agreement", "1.5"], "target agreement must be in (0, 1)"),
    ("auto-on-fp32", [*EXPORT, "--target-agreement", "0.99"], "applies to int8"),
    ("auto-on-features", [*INT8, "--mode", "features", "--target-agreement", "0.99"],
     "a features model has not"),
    ("auto-more-search-than-calib", [*INT8, "--target-agreement", "0.99", "--auto-search-images", "16"],
     "more than the 2 calibration images"),
    ("auto-tflite", ["export", "tflite", *TINY, "--out", "{out}", "--precision", "int8", "--calib", "{images}",
                     "--target-agreement", "0.99", "--auto-search-images", "8", "--calib-size", "8"],
     "tflite calibrates in its own converter"),
    # tracebacks before
    ("input-size-negative", [*EXPORT, "--input-size", "-3"], "--input-size must be at least 1, got -3"),
    ("classes-missing", [*EXPORT, "--calib", "{images}", "--classes", "{dir}/none.txt"],
     "--classes file {dir}/none.txt does not exist"),
    ("classes-is-a-folder", [*EXPORT, "--calib", "{images}", "--classes", "{dir}"], "is a folder, not a file"),
    ("bench-out-under-a-file", ["bench", "{file}", "--out", "{file}/results.json"], "is a file, not a folder"),
    ("qat-out-under-a-file", [*QAT, "--out", "{file}/ck.pt"], "cannot create checkpoint file"),
    # late or misleading errors before
    ("weights-is-a-folder", [*EXPORT, "--weights", "{dir}"], "weights file {dir} is a folder, not a file"),
    ("model-unknown", [*EXPORT, "--model", "no_such_net"], "unknown timm model 'no_such_net'"),
    ("model-typo-did-you-mean", [*EXPORT, "--model", "fbnetv3b"], "did you mean fbnetv3_b"),
    ("int8-without-calib", [*EXPORT, "--precision", "int8"], "--calib DIR is needed for int8"),
    ("hub-offline", [*EXPORT, "--weights", "hub"], "not in the local cache and the hub is unreachable"),
    ("target-typo-did-you-mean", [*REPORT, "--targets", "executorh"], "did you mean executorch"),
    ("export-target-typo", ["export", "executorh", *TINY, "--out", "{out}"], "did you mean executorch"),
    # bounds, types and paths
    ("calib-size-zero", [*INT8, "--calib-size", "0"], "--calib-size must be at least 1"),
    ("eval-size-zero", [*EXPORT, "--eval-size", "0"], "--eval-size must be at least 1"),
    ("threads-zero", [*EXPORT, "--threads", "0"], "--threads must be at least 1"),
    ("calib-is-a-plain-file", [*EXPORT, "--calib", "{file}"], "is neither a folder nor a .tar"),
    ("calib-missing", [*EXPORT, "--calib", "{dir}/none"], "does not exist"),
    ("calib-subfolder-missing", [*EXPORT, "--calib", "{images}::sub"], "'sub' is not a folder inside"),
    ("qat-checkpoint-missing", [*EXPORT, "--precision", "int8", "--calib", "{images}", "--qat", "{dir}/ck.pt"],
     "QAT checkpoint {dir}/ck.pt does not exist"),
    ("out-is-a-file", [*EXPORT[:-1], "{file}"], "output folder {file} is a file, not a folder"),
    ("qat-out-is-a-folder", [*QAT, "--out", "{dir}"], "checkpoint file {dir} is a folder, not a file"),
    ("qat-out-exists", [*QAT, "--out", "{file}"], "exists: pass --resume"),
    ("qat-resume-missing", [*QAT, "--out", "{dir}/ck.pt", "--resume"], "does not exist"),
    ("qat-save-every-negative", [*QAT, "--out", "{out}/ck.pt", "--save-every", "-1"],
     "--save-every must be at least 0"),
    ("qat-steps-zero", [*QAT, "--out", "{out}/ck.pt", "--steps", "0"], "steps must be at least 1"),
    ("finetune-out-under-a-file", [*FINETUNE, "--out", "{file}/w.safetensors"], "cannot create checkpoint file"),
    ("finetune-epochs-zero", [*FINETUNE, "--out", "{out}/w.safetensors", "--epochs", "0"],
     "--epochs must be positive"),
    ("report-eval-size-zero", [*REPORT, "--data", "{images}", "--eval-size", "0"], "--eval-size must be at least 1"),
    ("bench-runs-zero", ["bench", "{file}", "--runs", "0"], "--runs must be at least 1"),
    ("bench-devices-file-is-a-folder", ["bench", "{file}", "--devices", "{dir}"], "devices file {dir} is a folder"),
    # handled before, kept here so the table is the whole list (tests/test_executorch.py, test_cli.py)
    ("weights-missing", [*EXPORT, "--weights", "{dir}/w.safetensors"], "does not exist"),
    ("weights-corrupt", [*EXPORT, "--weights", "{file}"], "is not a plain state dict"),
    ("calib-empty", [*INT8, "--calib", "{dir}"], "no images found"),
    ("calib-too-few", [*INT8, "--calib-size", "8"], "only 3 readable image(s)"),
    ("out-under-a-file", [*EXPORT[:-1], "{file}/sub"], "cannot create output folder"),
    ("report-data-missing", [*REPORT, "--data", "{dir}/none"], "does not exist"),
    ("bench-artifact-missing", ["bench", "{dir}/none.pte"], "does not exist"),
    ("bench-unknown-device", ["bench", "{file}", "--device", "telnet://x"], "unknown device"),
    ("qat-data-missing", [*QAT[:-4], "--data", "{dir}/none", "--out", "{out}/ck.pt"], "does not exist"),
    ("finetune-data-missing", ["finetune", *TINY, "--data", "{dir}/none", "--out", "{out}/w.safetensors"],
     "does not exist"),
]


@pytest.fixture
def scene(tmp_path: Path) -> dict[str, str]:
    """The paths the table's placeholders stand for."""
    images = tmp_path / "images"
    images.mkdir()
    for p in sorted(IMAGENET.glob("*.JPEG"))[:3]:
        (images / p.name).write_bytes(p.read_bytes())
    (tmp_path / "file").write_text("not an image, an archive or a state dict\n")
    (tmp_path / "dir").mkdir()
    return {"out": str(tmp_path / "out"), "images": str(images), "file": str(tmp_path / "file"),
            "dir": str(tmp_path / "dir")}


@pytest.mark.parametrize(("args", "pattern"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(scene: dict[str, str], args: list[str], pattern: str) -> None:
    res = edge_main(*(a.format(**scene) for a in args))
    assert_one_line_error(res, pattern.format(**scene))
    assert not Path(scene["out"]).exists(), "an output folder was left behind"


@pytest.mark.parametrize("case", ["model-unknown", "model-typo-did-you-mean", "int8-without-calib",
                                  "num-classes-negative", "input-size-zero", "weights-is-a-folder",
                                  "classes-missing", "qat-out-under-a-file", "bench-out-under-a-file",
                                  "hub-offline", "export-target-typo"])
def test_errors_come_before_heavy_imports(scene: dict[str, str], case: str) -> None:
    """In a fresh process: the error, and none of torch/timm/toolchains imported."""
    args = [a.format(**scene) for a in next(c[1] for c in CASES if c[0] == case)]
    code = (f"import sys\nfrom edge.cli import main\nrc = main({args!r})\n"
            f"print(rc, [m for m in {HEAVY!r} if m in sys.modules])")
    env = {**os.environ, "EDGE_QUIET": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert res.stdout.strip().splitlines()[-1] == "2 []", res.stdout[-2000:] + res.stderr[-2000:]
    assert not Path(scene["out"]).exists()


def test_a_corrupt_calibration_image_is_replaced_and_named(tmp_path: Path) -> None:
    """One unreadable file in the seeded calibration draw: the next readable image takes its place,
    it is counted, and the held-out images are the ones after."""
    from edge.data import open_image_set
    from edge.models import ModelSpec
    from edge.pipeline import load_inputs

    calib = tmp_path / "calib"
    calib.mkdir()
    for p in sorted(IMAGENET.glob("*.JPEG"))[:8]:
        (calib / p.name).write_bytes(p.read_bytes())
    first = open_image_set(calib).split(8, seed=0)[0].items[0].path  # the seeded draw's first image
    first.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    inp = load_inputs(ModelSpec(name="test_efficientnet", weights="random", input_size=32), str(calib), 4,
                      eval_size=4, require_calib=True)
    assert inp.calib is not None and len(inp.calib) == 4
    assert inp.unreadable == [first] and inp.skipped == 1
    assert inp.eval_images is not None and len(inp.eval_images) == 3  # 8 files: 1 unreadable, 4 calibrate


def test_skipped_files_are_named() -> None:
    from edge.data import skipped_note

    skipped = [(Path(f"/d/img{i}.png"), "OSError") for i in range(12)]
    assert skipped_note("held-out", skipped[:2]) == "skipped 2 unreadable held-out file(s): img0.png, img1.png"
    assert skipped_note("held-out", skipped).endswith("img9.png and 2 more")


class _Model:
    def __init__(self, class_ids: list[str] | None, labels: list[str] | None) -> None:
        self.class_ids, self.labels, self.num_classes = class_ids, labels, 1000


def test_qat_takes_a_synset_folder_for_an_imagenet_model() -> None:
    """The folder's classes (synsets) are compared with the model's synsets, not its label text."""
    from timm.data import ImageNetInfo

    from edge.data import open_image_set
    from edge.errors import EdgeError
    from edge.qat import _labels, classes_match
    from quantize import PTQConfig, QATConfig

    info = ImageNetInfo()
    imagenet = _Model(list(info.label_names()), [info.index_to_description(i) for i in range(1000)])
    iset = open_image_set(IMAGENET)
    assert iset.classes is not None and iset.classes[0] == "n01440764"
    cfg = QATConfig(ptq=PTQConfig(calib_size=2), steps=2, eval_images=2)
    labels = _labels(iset, [it.label for it in iset.items], imagenet, cfg)
    assert labels is not None and int(labels.min()) >= 0
    assert classes_match(["cat", "dog"], _Model(None, None))  # a model that names no classes
    with pytest.raises(EdgeError, match="are not the model's"):
        _labels(iset, [it.label for it in iset.items], _Model(["a", "b"], ["a", "b"]), cfg)
