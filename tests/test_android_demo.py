"""android_demo/: what this machine can check of the Android app without an SDK or a phone.

* The manifest and resources link against the platform's framework-res.apk (Debian's aapt/aapt2).
* The platform-independent Kotlin (android_demo/app/src/main/java/dev/edge/demo/core) is compiled
  with Debian's kotlinc and run on the JVM: it parses manifests that edge's real exporters write,
  preprocesses real ImageNet JPEGs (decoded here with Pillow, as edge does) and must give the
  tensor timm's transform gives; int8 quantization, top-k and the "edge.bench/1" writer are held
  to numpy and to the host's result validator.
The APK build and on-device runs are not checked here (see android_demo/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import IMAGENET, ROOT, require_tool

APP = ROOT / "android_demo" / "app"
CORE = APP / "src" / "main" / "java" / "dev" / "edge" / "demo" / "core"
CHECK = APP / "src" / "test" / "java" / "dev" / "edge" / "demo" / "core" / "CoreCheck.kt"
RESOURCES = APP / "src" / "test" / "resources"
FIXTURES = sorted((RESOURCES / "manifests").glob("*.json"))
BENCH_EXAMPLE = RESOURCES / "bench" / "example-result.json"
FRAMEWORK_RES = Path("/usr/share/android-framework-res/framework-res.apk")
STDLIB = Path("/usr/share/java/kotlin-stdlib.jar")
IMAGES = ["n01440764_tench.JPEG", "n01484850_great_white_shark.JPEG", "n01494475_hammerhead.JPEG"]


class Kotlin:
    """The compiled core plus its check main, run on the JVM."""

    def __init__(self, jar: Path) -> None:
        self.jar = jar

    def __call__(self, *args: str | Path | int) -> str:
        java = require_tool("java", "openjdk-17-jre-headless")
        p = subprocess.run([java, "-cp", f"{self.jar}:{STDLIB}", "dev.edge.demo.core.CoreCheckKt",
                            *[str(a) for a in args]], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, f"kotlin check {args[0]} failed:\n{p.stdout}\n{p.stderr}"
        return p.stdout


@pytest.fixture(scope="session")
def kotlin(tmp_path_factory: pytest.TempPathFactory) -> Kotlin:
    kotlinc = require_tool("kotlinc", "kotlin")
    require_tool("java", "openjdk-17-jre-headless")
    jar = tmp_path_factory.mktemp("kotlin") / "core.jar"
    sources = sorted(CORE.glob("*.kt")) + [CHECK]
    p = subprocess.run([kotlinc, *map(str, sources), "-d", str(jar)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and jar.is_file(), f"kotlinc failed:\n{p.stderr}"
    return Kotlin(jar)


@pytest.fixture(scope="session")
def fresh_manifests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Manifests written just now by edge's real exporters (ExecuTorch fp32, TFLite int8 with int8
    I/O), for fbnetv3_b's model record and preprocessing at 32 px with a tiny network swapped in
    so the conversions take seconds: the writer's output, not a copy of it."""
    import torch

    from edge._deps import has
    from edge.models import ModelSpec, load_model
    from exporters import get_exporter

    out = tmp_path_factory.mktemp("android_manifests")
    model = load_model(ModelSpec(weights="random", input_size=32))
    assert model.num_classes is not None
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, model.num_classes)).eval()
    tiny = dataclasses.replace(model, module=net)
    found = {"executorch": get_exporter("executorch").export(tiny, "fp32", out / "et").manifest_path}
    if has("onnx2tf") and has("ai_edge_litert"):
        found["tflite"] = get_exporter("tflite", io="int8").export(tiny, "int8", out / "tfl",
                                                                   tiny.example_input(8)).manifest_path
    return found


def _fixture(target: str) -> Path:
    return next(p for p in FIXTURES if json.loads(p.read_text())["target"] == target)


def _paths(v: Any, at: str = "") -> set[str]:
    """The key paths of a manifest (values dropped; lists by their first element)."""
    if isinstance(v, dict):
        return {at}.union(*(_paths(x, f"{at}.{k}") for k, x in v.items()))
    if isinstance(v, list) and v:
        return {at} | _paths(v[0], f"{at}[]")
    return {at}


def test_aapt_links_manifest_and_resources(tmp_path: Path) -> None:
    """The AndroidManifest.xml and res/ link against the platform's framework resources, with both
    aapt (package) and aapt2 (compile + link, what the Android Gradle plugin runs)."""
    aapt = require_tool("aapt", "aapt")
    aapt2 = require_tool("aapt2", "aapt")
    if not FRAMEWORK_RES.is_file():
        require_tool("framework-res.apk", "android-framework-res")
    main = APP / "src" / "main"
    # The Android Gradle plugin writes the namespace (app/build.gradle.kts) into the manifest as its
    # package before linking; the source manifest must not carry one (AGP 8 rejects it).
    source = (main / "AndroidManifest.xml").read_text()
    assert " package=" not in source
    namespace = re.search(r'namespace = "([\w.]+)"', (APP / "build.gradle.kts").read_text())
    assert namespace is not None and namespace.group(1) == "dev.edge.demo"
    manifest = tmp_path / "AndroidManifest.xml"
    manifest.write_text(source.replace("<manifest ", f'<manifest package="{namespace.group(1)}" ', 1))
    gen = tmp_path / "gen"
    gen.mkdir()
    p = subprocess.run([aapt, "package", "-f", "-m", "-J", str(gen), "-M", str(manifest),
                        "-S", str(main / "res"), "-A", str(main / "assets"), "-I", str(FRAMEWORK_RES),
                        "-F", str(tmp_path / "aapt.apk")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r_java = (gen / "dev" / "edge" / "demo" / "R.java").read_text()
    for name in ("activity_main", "result_text", "app_name"):
        assert f" {name}=" in r_java, f"R.{name} missing from the linked resources"
    dump = subprocess.run([aapt, "dump", "xmltree", str(tmp_path / "aapt.apk"), "AndroidManifest.xml"],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert ".BenchmarkActivity" in dump and ".MainActivity" in dump and "android.intent.action.MAIN" in dump

    flat = tmp_path / "res.zip"
    p = subprocess.run([aapt2, "compile", "--dir", str(main / "res"), "-o", str(flat)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([aapt2, "link", "-o", str(tmp_path / "aapt2.apk"), "-I", str(FRAMEWORK_RES),
                        "--manifest", str(manifest), "--java", str(tmp_path / "gen2"),
                        "--min-sdk-version", "24", "--target-sdk-version", "29", str(flat)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_kotlin_core_has_no_android_imports() -> None:
    """The JVM-tested files stay platform independent (the Android code lives beside them)."""
    for src in CORE.glob("*.kt"):
        imports = [line for line in src.read_text().splitlines() if line.startswith("import ")]
        assert not [i for i in imports if i.split()[1].startswith(("android.", "androidx.", "org.pytorch",
                                                                  "org.tensorflow"))], src


def test_kotlin_selftest(kotlin: Kotlin) -> None:
    assert "selftest ok" in kotlin("selftest")


def test_committed_fixtures_are_what_edge_writes(fresh_manifests: dict[str, Path]) -> None:
    """Every field of the example manifests the Kotlin tests read is still written by edge's writer:
    a field renamed, moved or dropped in edge/manifest.py or an exporter's io section fails here
    (fields added since are fine: the app does not read them)."""
    assert {json.loads(p.read_text())["target"] for p in FIXTURES} == {"executorch", "tflite"}
    for target, fresh in fresh_manifests.items():
        committed = json.loads(_fixture(target).read_text())
        now = json.loads(fresh.read_text())
        for volatile in ("delegation", "onnx_rewrites"):  # depend on the network, not the writer
            committed.pop(volatile, None)
            now.pop(volatile, None)
        gone = _paths(committed) - _paths(now)
        assert not gone, f"{target}: edge no longer writes {sorted(gone)}; update the app and regenerate " \
                         f"{_fixture(target).name} (android_demo/README.md)"


def test_kotlin_reads_every_field_the_app_uses(kotlin: Kotlin, fresh_manifests: dict[str, Path]) -> None:
    """The Kotlin parser on the committed fixtures and on manifests written just now, value for value."""
    paths = [*FIXTURES, *fresh_manifests.values()]
    lines = kotlin("parse", *paths).splitlines()
    assert len(lines) == len(paths)
    for path, line in zip(paths, lines, strict=True):
        got, m = json.loads(line), json.loads(path.read_text())
        pre = m["preprocessing"]
        assert (got["artifact"], got["target"], got["precision"]) == (m["artifact"], m["target"], m["precision"])
        assert (got["model"], got["mode"], got["num_classes"]) == \
            (m["model"]["name"], m["model"]["mode"], m["model"]["num_classes"])
        assert got["artifact_sha256"] == m["artifact_sha256"]
        assert (got["input_size"], got["interpolation"], got["crop_pct"], got["crop_mode"]) == \
            (pre["input_size"], pre["interpolation"], pre["crop_pct"], pre["crop_mode"])
        np.testing.assert_array_equal(np.float32(got["mean"]), np.float32(pre["mean"]))
        np.testing.assert_array_equal(np.float32(got["std"]), np.float32(pre["std"]))
        for side in ("inputs", "outputs"):
            for g, t in zip(got[side], m["io"][side], strict=True):
                assert (g["name"], g["shape"], g["dtype"]) == (t["name"], t["shape"], t["dtype"])
                assert g["layout"] == t.get("layout")
                q = t.get("quantization")
                assert (g["scale"], g["zero_point"]) == \
                    ((float(np.float32(q["scale"])), q["zero_point"]) if q else (None, None))
        assert got["labels"] == len(m["labels"]) and got["first_label"] == m["labels"][0]
        runtime = "executorch" if m["target"] == "executorch" else "ai-edge-litert"
        assert got["export_runtime_version"] == m["versions"][runtime]


def _variants() -> list[tuple[str, dict[str, Any]]]:
    """The committed manifests, and the fp32 one with the other timm eval settings edge can record
    (bicubic 224 px at crop 0.875, as most timm models; squash; nearest; NHWC)."""
    et = json.loads(_fixture("executorch").read_text())
    tfl = json.loads(_fixture("tflite").read_text())

    def variant(**pre: Any) -> dict[str, Any]:
        m = json.loads(json.dumps(et))
        m["preprocessing"].update(pre)
        size = m["preprocessing"]["input_size"]
        m["io"]["inputs"][0]["shape"] = [1, *size]
        return m

    nhwc = variant(interpolation="bicubic", input_size=[3, 96, 96], crop_pct=0.9)
    nhwc["io"]["inputs"][0].update(shape=[1, 96, 96, 3], layout="NHWC")
    return [("executorch-32-bilinear", et), ("tflite-32-int8", tfl),
            ("bicubic-224", variant(interpolation="bicubic", input_size=[3, 224, 224], crop_pct=0.875)),
            ("squash-64-bicubic", variant(interpolation="bicubic", input_size=[3, 64, 64], crop_mode="squash")),
            ("nearest-48", variant(interpolation="nearest", input_size=[3, 48, 48], crop_pct=1.0)),
            ("nhwc-96-bicubic", nhwc)]


@pytest.mark.parametrize("name,manifest", _variants(), ids=[v[0] for v in _variants()])
def test_preprocessing_matches_timm(kotlin: Kotlin, tmp_path: Path, name: str, manifest: dict[str, Any]) -> None:
    """Real JPEGs, decoded by Pillow as edge decodes them; the Kotlin tensor is timm's eval transform
    (torchvision Resize/CenterCrop on a PIL image, ToTensor, Normalize) to float32 rounding, and the
    int8 input of a full-integer .tflite is edge's LiteRT quantization, byte for byte."""
    from PIL import Image
    from timm.data import create_transform

    from edge.runtimes.litert import _from_float

    pre = manifest["preprocessing"]
    transform = create_transform(input_size=tuple(pre["input_size"]), interpolation=pre["interpolation"],
                                 mean=tuple(pre["mean"]), std=tuple(pre["std"]), crop_pct=pre["crop_pct"],
                                 crop_mode=pre["crop_mode"], is_training=False)
    mpath = tmp_path / "m.json"
    mpath.write_text(json.dumps(manifest))
    spec = manifest["io"]["inputs"][0]
    for image in IMAGES:
        with Image.open(IMAGENET / image) as im:
            rgb = im.convert("RGB")
        raw = tmp_path / "rgb.bin"
        raw.write_bytes(rgb.tobytes())
        ref = transform(rgb).numpy()[None]
        if spec["layout"] == "NHWC":
            ref = ref.transpose(0, 2, 3, 1)
        quantized = spec["dtype"] != "float32"
        args: list[str | Path | int] = [mpath, raw, rgb.width, rgb.height, tmp_path / "x.f32"]
        if quantized:
            args.append(tmp_path / "x.q")
        kotlin("preprocess", *args)
        got = np.fromfile(tmp_path / "x.f32", dtype="<f4").reshape(ref.shape)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6, err_msg=f"{name}: {image} ({rgb.size})")
        if quantized:
            q = spec["quantization"]
            detail = {"dtype": np.dtype(spec["dtype"]).type, "quantization": (q["scale"], q["zero_point"])}
            want = _from_float(ref.astype(np.float32), detail)
            np.testing.assert_array_equal(np.fromfile(tmp_path / "x.q", dtype=spec["dtype"]).reshape(ref.shape), want)


def test_quantization_matches_edge_litert(kotlin: Kotlin, tmp_path: Path) -> None:
    """quantize/dequantize against edge's LiteRT runtime (numpy rint/clip), ties and clamping included."""
    from edge.runtimes.litert import _from_float, _to_float

    scale, zero = 0.0185900963842869, -14
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1.5, 4000), (np.arange(-40, 40) + 0.5 - zero) * np.float32(scale),
                        [-1e6, 1e6, 0.0]]).astype(np.float32)
    x.astype("<f4").tofile(tmp_path / "x.f32")
    for dtype in ("int8", "uint8"):
        z = zero if dtype == "int8" else 114
        kotlin("quant", tmp_path / "x.f32", repr(scale), z, dtype, tmp_path / "q.bin", tmp_path / "dq.f32")
        detail = {"dtype": np.dtype(dtype).type, "quantization": (scale, z)}
        q = np.fromfile(tmp_path / "q.bin", dtype=dtype)
        np.testing.assert_array_equal(q, _from_float(x, detail))
        np.testing.assert_array_equal(np.fromfile(tmp_path / "dq.f32", dtype="<f4"), _to_float(q, detail))


def test_top5_matches_numpy(kotlin: Kotlin, tmp_path: Path) -> None:
    manifest = _fixture("executorch")
    logits = np.random.default_rng(1).normal(0, 4, 1000).astype(np.float32)
    logits.astype("<f4").tofile(tmp_path / "l.f32")
    got = json.loads(kotlin("topk", tmp_path / "l.f32", 5, manifest))
    z = logits.astype(np.float64) - logits.max()
    p = np.exp(z) / np.exp(z).sum()
    order = np.argsort(-p, kind="stable")[:5]
    labels = json.loads(manifest.read_text())["labels"]
    assert [g["index"] for g in got] == order.tolist()
    assert [g["label"] for g in got] == [labels[i] for i in order]
    np.testing.assert_allclose([g["p"] for g in got], p[order], rtol=1e-12)


def test_bench_result_is_read_by_the_host(kotlin: Kotlin, tmp_path: Path) -> None:
    """The app's "edge.bench/1" writer, through the host's validator and loader (edge.bench.results);
    the committed example is exactly what the writer produces."""
    from edge.bench.results import load_results, validate_result

    samples = [5.0, 4.25, 6.5, 4.0, 4.75, 5.5, 30.125]
    t = np.asarray(samples)
    for fixture in FIXTURES:
        out = tmp_path / f"{fixture.stem}.result.json"
        kotlin("bench-result", fixture, out, *map(str, samples))
        text = out.read_text()
        assert text.count("\n") == 1, "one line of JSON, as every runner prints it"
        r = validate_result(json.loads(text))
        m = json.loads(fixture.read_text())
        assert r["ok"] is True and r["error"] is None and r["runner"] == "android_demo"
        assert (r["artifact"], r["artifact_sha256"], r["target"], r["precision"]) == \
            (m["artifact"], m["artifact_sha256"], m["target"], m["precision"])
        assert r["latency_ms"] == {"p50": round(float(np.percentile(t, 50)), 3),
                                   "p90": round(float(np.percentile(t, 90)), 3),
                                   "min": t.min(), "max": t.max(), "mean": round(float(t.mean()), 3)}
        assert r["load_ms"] == 12.346 and r["first_run_ms"] == 5.0 and r["peak_rss_mb"] is None
        assert r["output"] == {"shapes": [o["shape"] for o in m["io"]["outputs"]], "finite": True, "shape_ok": True}
        if m["target"] == "executorch":
            assert text == BENCH_EXAMPLE.read_text(), f"regenerate {BENCH_EXAMPLE.name} (see README)"
        failed = tmp_path / "failed.json"
        kotlin("bench-result", fixture, failed)
        f = validate_result(json.loads(failed.read_text()))
        assert f["ok"] is False and f["error"] == f"{m['artifact']}: cannot open the model"
        assert f["latency_ms"] == dict.fromkeys(("p50", "p90", "min", "max", "mean"))
        (tmp_path / "all.json").write_text(json.dumps([r, f]))
        assert len(load_results(tmp_path / "all.json")) == 2
