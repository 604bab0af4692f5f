#!/usr/bin/env python3
"""edge's on-device benchmark runner: ONE self-contained file, copied to a device and run there.

    python3 device_runner.py ARTIFACT [--threads N] [--runs N] [--warmup N] [--device-name NAME] [--out FILE]

It needs only the standard library, numpy and the runtime that runs the artifact (ExecuTorch for
.pte; ai_edge_litert, else tflite_runtime, else tensorflow.lite for .tflite; coremltools on macOS
for .mlpackage). It must never import edge, torch or anything else of the project: the device has
none of it. It reads the manifest beside the artifact (`<artifact>.json`, written by `edge export`)
for the input shape/dtype/quantization and the expected output shapes, runs one first inference,
the remaining warm-up runs and N timed runs on a deterministic input, and prints exactly one JSON
line in the "edge.bench/1" schema (docs/bench.md). Any failure prints the same schema with
"ok": false and a one-line "error", and exits with status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import sys
import time
from typing import Any

SCHEMA = "edge.bench/1"
SEED = 0


class RunnerError(Exception):
    """A problem that ends the run: reported as {"ok": false, "error": ...}."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def sha256_path(path: str) -> str:
    """sha256 of a file, or of a bundle folder's files in sorted order (as edge.io.sha256_path)."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        files = sorted(
            os.path.join(root, f) for root, _, names in os.walk(path) for f in names
        )
    else:
        files = [path]
    for f in files:
        if os.path.isdir(path):
            h.update(os.path.relpath(f, path).encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def device_facts(name: str | None) -> dict[str, Any]:
    """What the device is, read on the device itself (nothing assumed)."""
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            info = fh.read()
        for key in ("model name", "Hardware", "Processor", "cpu model", "uarch"):
            for line in info.splitlines():
                k, _, v = line.partition(":")
                if k.strip() == key and v.strip():
                    cpu = v.strip()
                    break
            if cpu:
                break
    except OSError:
        pass
    if not cpu and sys.platform == "darwin":
        try:
            import subprocess

            cpu = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                 text=True, timeout=5).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            cpu = None
    if not cpu:
        cpu = platform.processor() or None
    system = platform.system()
    release = platform.release()
    if system == "Darwin":
        release = platform.mac_ver()[0] or release
        system = "macOS"
    return {"name": name or socket.gethostname(), "cpu": cpu, "cores": os.cpu_count(),
            "os": f"{system} {release}".strip(), "arch": platform.machine() or None, "emulated": False}


def peak_rss_mb() -> float | None:
    """This process's peak RSS. Linux: VmHWM, because getrusage's ru_maxrss survives exec and
    would report the peak of the process that started the runner (e.g. a host holding torch)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 3)  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return round(rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0, 3)


def empty_result(artifact: str, args: argparse.Namespace, device_name: str | None) -> dict[str, Any]:
    base = os.path.basename(artifact.rstrip("/"))
    return {
        "schema": SCHEMA, "artifact": base, "artifact_sha256": None,
        "target": TARGETS.get(os.path.splitext(base)[1].lower()), "precision": None,
        "runner": "python", "runtime": None, "runtime_version": None,
        "threads": args.threads, "warmup": args.warmup, "runs": args.runs,
        "load_ms": None, "first_run_ms": None,
        "latency_ms": {"p50": None, "p90": None, "min": None, "max": None, "mean": None},
        "peak_rss_mb": None,
        "output": {"shapes": None, "finite": None, "shape_ok": None},
        "device": device_facts(device_name),
        "ok": False, "error": None,
    }


def _dist_version(*names: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for n in names:
        try:
            return version(n)
        except PackageNotFoundError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# Runtimes. Each loader imports its runtime, then times only the model load, and returns
# (runtime name, version, run(x) -> list of outputs, input spec, load seconds). Inputs and outputs
# are in the artifact's own layout and dtype (the manifest describes them).


def _load_executorch(path: str, threads: int, manifest: dict[str, Any]) -> tuple[str, str | None, Any, Any, float]:
    import numpy as np

    try:
        from executorch.runtime import Runtime
    except ImportError as exc:
        raise RunnerError(f"no ExecuTorch runtime on this device to run a .pte (pip install executorch): "
                          f"{_one_line(exc)}") from exc
    if threads:
        try:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(int(threads))
        except (ImportError, AttributeError, RuntimeError) as exc:
            raise RunnerError(f"cannot set ExecuTorch's thread pool to {threads} threads: {_one_line(exc)}") from exc
    try:
        import torch  # executorch's pybindings take torch tensors; torch ships with executorch
    except ImportError as exc:
        raise RunnerError(f"executorch's Python runtime needs torch: {_one_line(exc)}") from exc
    t0 = time.perf_counter()
    try:
        program = Runtime.get().load_program(path)
        method = program.load_method("forward")
    except (RuntimeError, ValueError) as exc:
        raise RunnerError(f"{os.path.basename(path)} is not a loadable ExecuTorch program: {_one_line(exc)}") from exc
    load_s = time.perf_counter() - t0
    if method is None:
        raise RunnerError(f"{os.path.basename(path)} has no 'forward' method")

    def run(x: Any) -> list[Any]:
        outs = method.execute([torch.from_numpy(np.ascontiguousarray(x))])
        return [o.detach().numpy() if hasattr(o, "detach") else np.asarray(o) for o in outs]

    meta = method.metadata.input_tensor_meta(0)
    spec = {"shape": [int(s) for s in meta.sizes()], "dtype": "float32", "quantization": None}
    return "executorch", _dist_version("executorch"), run, spec, load_s


_TFLITE = (("ai_edge_litert.interpreter", "litert", ("ai-edge-litert",)),
           ("tflite_runtime.interpreter", "tflite_runtime", ("tflite-runtime", "tflite_runtime")),
           ("tensorflow.lite", "tensorflow.lite", ("tensorflow", "tensorflow-cpu")))


def _tflite_interpreter() -> tuple[Any, str, str | None]:
    import importlib

    tried = []
    for module, name, dists in _TFLITE:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            tried.append(f"{module} ({_one_line(exc)})")
            continue
        return mod.Interpreter, name, _dist_version(*dists)
    raise RunnerError("no TFLite runtime on this device to run a .tflite: install ai-edge-litert, "
                      "tflite-runtime or tensorflow (tried " + "; ".join(tried) + ")")


def _load_tflite(path: str, threads: int, manifest: dict[str, Any]) -> tuple[str, str | None, Any, Any, float]:
    import numpy as np

    interpreter, name, version = _tflite_interpreter()
    t0 = time.perf_counter()
    try:
        # LiteRT applies its default XNNPACK delegate when the interpreter is built.
        it = interpreter(model_path=path, num_threads=threads or None)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise RunnerError(f"{os.path.basename(path)} is not a loadable .tflite model: {_one_line(exc)}") from exc
    load_s = time.perf_counter() - t0
    inp = it.get_input_details()[0]
    outs = it.get_output_details()
    described = (manifest.get("io") or {}).get("outputs") or []
    by_name = {d["name"]: d for d in outs}
    names = [o.get("tensor", o.get("name")) for o in described]
    if described and all(n in by_name for n in names):
        outs = [by_name[n] for n in names]  # the manifest's order (the model's own)

    def run(x: Any) -> list[Any]:
        it.set_tensor(inp["index"], x)
        it.invoke()
        return [it.get_tensor(d["index"]) for d in outs]

    m_inp = ((manifest.get("io") or {}).get("inputs") or [{}])[0]
    quant = m_inp.get("quantization")
    if quant is None and inp["dtype"] in (np.int8, np.uint8) and inp["quantization"][0]:
        quant = {"scale": float(inp["quantization"][0]), "zero_point": int(inp["quantization"][1])}
    spec = {"shape": [int(s) for s in inp["shape"]], "dtype": np.dtype(inp["dtype"]).name, "quantization": quant}
    out_quant = [(d["quantization"] if d["dtype"] in (np.int8, np.uint8) and d["quantization"][0] else None)
                 for d in outs]
    spec["output_quantization"] = out_quant
    return name, version, run, spec, load_s


def _load_coreml(path: str, threads: int, manifest: dict[str, Any]) -> tuple[str, str | None, Any, Any, float]:
    if sys.platform != "darwin":
        raise RunnerError(f"Core ML runs only on macOS/iOS; this device is {platform.system()} "
                          f"({platform.machine()}), so {os.path.basename(path)} cannot run here")
    try:
        import coremltools as ct
    except ImportError as exc:
        raise RunnerError("running a .mlpackage needs coremltools (pip install coremltools): "
                          f"{_one_line(exc)}") from exc
    t0 = time.perf_counter()
    try:
        model = ct.models.MLModel(path, compute_units=ct.ComputeUnit.ALL)
    except (RuntimeError, ValueError, OSError) as exc:
        raise RunnerError(f"{os.path.basename(path)} is not a loadable Core ML package: {_one_line(exc)}") from exc
    load_s = time.perf_counter() - t0
    io = manifest.get("io") or {}
    m_inp = (io.get("inputs") or [{}])[0]
    in_name = m_inp.get("name", "image")
    out_names = [o["name"] for o in io.get("outputs") or []]

    def run(x: Any) -> list[Any]:
        res = model.predict({in_name: x})
        keys = [k for k in out_names if k in res] or list(res)
        return [res[k] for k in keys]

    spec = {"shape": m_inp.get("shape"), "dtype": m_inp.get("dtype", "float32"), "quantization": None}
    return "coreml", _dist_version("coremltools"), run, spec, load_s


# target name -> (artifact suffix, loader), keyed as the exporters' registry is (a test checks that
# these are exactly its targets and suffixes: this file cannot import it on a device)
LOADERS = {
    "executorch": (".pte", _load_executorch),
    "tflite": (".tflite", _load_tflite),
    "coreml": (".mlpackage", _load_coreml),
}
TARGETS = {suffix: target for target, (suffix, _) in LOADERS.items()}  # suffix -> target
# every "runtime" a result may name: the loaders' (TFLite: whichever interpreter the device has)
RUNTIMES = ("executorch", "litert", "tflite_runtime", "tensorflow.lite", "coreml")


def read_manifest(artifact: str) -> dict[str, Any]:
    path = artifact.rstrip("/") + ".json"
    if not os.path.isfile(path):
        raise RunnerError(f"no manifest beside the artifact: {os.path.basename(path)} is missing "
                          "(push <artifact>.json written by `edge export` with it)")
    try:
        with open(path, encoding="utf-8") as fh:
            man = json.load(fh)
    except (OSError, ValueError) as exc:
        raise RunnerError(f"manifest {os.path.basename(path)} is unreadable: {_one_line(exc)}") from exc
    if not isinstance(man, dict) or not isinstance(man.get("io"), dict):
        raise RunnerError(f"manifest {os.path.basename(path)} has no 'io' section (not written by `edge export`?)")
    return man


def make_input(spec: dict[str, Any]) -> Any:
    """A deterministic input (seeded standard normal, the scale of a normalised image), quantized
    with the artifact's input scale/zero point where its input tensor is int8/uint8."""
    import numpy as np

    shape = spec.get("shape")
    if not shape:
        raise RunnerError("the manifest gives no input shape")
    x = np.random.default_rng(SEED).standard_normal([int(s) for s in shape]).astype(np.float32)
    dtype = np.dtype(spec.get("dtype") or "float32")
    if dtype.kind in "iu":
        q = spec.get("quantization")
        if not q or not q.get("scale"):
            raise RunnerError(f"the input is {dtype.name} but neither manifest nor model gives its scale/zero point")
        info = np.iinfo(dtype)
        return np.clip(np.rint(x / float(q["scale"]) + int(q["zero_point"])), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _to_float(y: Any, quant: Any) -> Any:
    import numpy as np

    y = np.asarray(y)
    if quant is not None:
        scale, zero = quant
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32) if y.dtype.kind == "f" else y


def bench(args: argparse.Namespace, res: dict[str, Any]) -> dict[str, Any]:
    """Fill ``res`` in place (what was measured before a failure stays in the error result)."""
    artifact = args.artifact
    if args.runs < 1 or args.warmup < 0 or args.threads < 0:
        raise RunnerError("--runs must be at least 1, --warmup and --threads at least 0")
    if not os.path.exists(artifact):
        raise RunnerError(f"artifact {os.path.basename(artifact)} does not exist on the device")
    suffix = os.path.splitext(artifact.rstrip("/"))[1].lower()
    if suffix not in TARGETS:
        raise RunnerError(f"unknown artifact type {suffix!r} (known: {', '.join(sorted(TARGETS))})")
    try:
        import numpy as np
    except ImportError as exc:
        raise RunnerError(f"the runner needs numpy on the device (pip install numpy): {_one_line(exc)}") from exc
    manifest = read_manifest(artifact)
    res["precision"] = manifest.get("precision")
    res["target"] = manifest.get("target") or res["target"]
    res["artifact_sha256"] = sha256_path(artifact)
    expected_sha = manifest.get("artifact_sha256")
    if expected_sha and expected_sha != res["artifact_sha256"]:
        raise RunnerError(f"{res['artifact']} does not match its manifest (sha256 {res['artifact_sha256'][:12]}... "
                          f"vs {expected_sha[:12]}...): corrupt or truncated copy")

    runtime, version, run, spec, load_s = LOADERS[TARGETS[suffix]][1](artifact, args.threads, manifest)
    res.update(runtime=runtime, runtime_version=version, load_ms=_ms(load_s))

    x = make_input(spec)
    out_quant = spec.get("output_quantization")
    try:
        t0 = time.perf_counter()
        outs = run(x)
        first_s = time.perf_counter() - t0
        # The first run counts as the first warm-up run (or the first timed run when --warmup 0).
        for _ in range(max(args.warmup - 1, 0)):
            outs = run(x)
        times = [first_s] if args.warmup == 0 else []
        while len(times) < args.runs:
            t0 = time.perf_counter()
            outs = run(x)
            times.append(time.perf_counter() - t0)
    except (RuntimeError, ValueError) as exc:
        raise RunnerError(f"inference failed: {_one_line(exc)}") from exc
    res["first_run_ms"] = _ms(first_s)
    t = np.asarray(times) * 1000.0
    res["latency_ms"] = {"p50": round(float(np.percentile(t, 50)), 3), "p90": round(float(np.percentile(t, 90)), 3),
                         "min": round(float(t.min()), 3), "max": round(float(t.max()), 3),
                         "mean": round(float(t.mean()), 3)}
    res["peak_rss_mb"] = peak_rss_mb()

    shapes = [[int(s) for s in np.shape(o)] for o in outs]
    floats = [_to_float(o, out_quant[i] if out_quant else None) for i, o in enumerate(outs)]
    finite = all(bool(np.isfinite(f).all()) for f in floats if np.asarray(f).dtype.kind == "f")
    expected = [[int(s) for s in o.get("shape", [])] for o in (manifest["io"].get("outputs") or [])]
    shape_ok = bool(expected) and shapes == expected
    res["output"] = {"shapes": shapes, "finite": finite, "shape_ok": shape_ok}
    problems = []
    if not finite:
        problems.append("outputs are not finite (NaN/inf)")
    if not shape_ok:
        problems.append(f"output shapes {shapes} differ from the manifest's {expected}")
    res["ok"] = not problems
    res["error"] = "; ".join(problems) or None
    return res


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="device_runner.py", description=__doc__.splitlines()[0])
    p.add_argument("artifact", help=".pte, .tflite or .mlpackage, with <artifact>.json beside it")
    p.add_argument("--threads", type=int, default=2, help="runtime threads (0: the runtime's default)")
    p.add_argument("--runs", type=int, default=20, help="timed runs")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs (the first run is one of them)")
    p.add_argument("--device-name", default=None, help="device label for the result (default: hostname)")
    p.add_argument("--out", default=None, help="also write the JSON line to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = empty_result(args.artifact, args, args.device_name)
    try:
        bench(args, res)
    except RunnerError as exc:
        res["ok"] = False
        res["error"] = _one_line(exc)
    line = json.dumps(res, separators=(",", ":"))
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(line + "\n")
        os.replace(tmp, args.out)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
