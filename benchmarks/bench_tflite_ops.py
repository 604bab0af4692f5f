"""Benchmark (not a test): what int8 buys per op type in LiteRT's XNNPACK on this CPU.

Why: issue 3 asks for an int8 `.tflite` >= 2x faster than fp32. Whether that is reachable depends
less on the export than on the CPU's int8 kernels: without AVX-512 VNNI / AVX-VNNI (x86) or the
dot-product extension (Arm), XNNPACK's int8 GEMM widens to int16 and runs at about fp32's speed.
This builds small Keras graphs of the op types fbnetv3_b is made of (4 of each, at one of its
feature-map shapes), converts each to fp32 and to int8 (per-channel, the TF converter's own
calibration on random data) and times both side by side, batch 1, same threads, median of --runs.

    .venv/bin/python benchmarks/bench_tflite_ops.py [--shapes 56x96,28x256,14x512] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

from edge.bench.host import cpu_flags

KINDS = ("pointwise conv", "depthwise conv", "depthwise conv 5x5", "depthwise conv 7x7",
         "conv + hard-swish (fused float op)",
         "conv + hard-swish 3 ops (1/6 kept)", "conv + hard-swish 2 ops (1/6 folded)",
         "conv + squeeze-excite", "conv + residual add")


def _cpu_flags() -> str:
    """The ISA extensions that decide int8 GEMM speed (x86 Linux; empty elsewhere)."""
    flags = cpu_flags()
    if not flags:
        return "unknown"
    keep = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "asimddp", "i8mm") if f in flags]
    return " ".join(keep) or "none of avx2/avx512/vnni/asimddp"


def _block(kind: str, channels: int) -> Callable[[Any], Any]:
    import tensorflow as tf

    layers = tf.keras.layers

    def hswish(x: Any) -> Any:  # the TF converter fuses this into HARD_SWISH
        return x * tf.nn.relu6(x + 3.0) * (1.0 / 6.0)

    def hswish_3(x: Any) -> Any:  # edge's int8 form where the 1/6 cannot be folded
        return (x * (1.0 / 6.0)) * tf.nn.relu6(x + 3.0)

    def hswish_2(x: Any) -> Any:  # the 1/6 carried by the next op's weights
        return x * tf.nn.relu6(x + 3.0)

    def se(x: Any) -> Any:
        g = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        g = tf.nn.relu(tf.nn.conv2d(g, tf.fill([1, 1, channels, channels // 4], 0.01), 1, "VALID"))
        g = tf.nn.conv2d(g, tf.fill([1, 1, channels // 4, channels], 0.01), 1, "VALID")
        return x * tf.clip_by_value(g + 3.0, 0.0, 6.0)

    def step(x: Any) -> Any:
        if kind.startswith("depthwise conv"):  # 3x3 unless named (ConvNeXt's are 7x7)
            return layers.DepthwiseConv2D(int(kind[-1]) if kind[-1].isdigit() else 3, padding="same")(x)
        y = layers.Conv2D(channels, 1)(x)
        extra = {"conv + hard-swish (fused float op)": hswish, "conv + hard-swish 3 ops (1/6 kept)": hswish_3,
                 "conv + hard-swish 2 ops (1/6 folded)": hswish_2, "conv + squeeze-excite": se}.get(kind)
        if extra is not None:
            return layers.Lambda(extra)(y)
        if kind == "conv + residual add":
            return layers.Add()([x, y])
        return y

    return step


def _convert(kind: str, side: int, channels: int, int8: bool) -> bytes:
    import numpy as np
    import tensorflow as tf

    inp = tf.keras.Input((side, side, channels), batch_size=1)
    x = inp
    for _ in range(4):
        x = _block(kind, channels)(x)
    conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, x))
    if int8:
        rng = np.random.default_rng(0)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.standard_normal((1, side, side, channels), np.float32)]
                                               for _ in range(8))
    with contextlib.redirect_stdout(sys.stderr):  # the converter prints the saved model's signature
        return bytes(conv.convert())


def _median_ms(blob: bytes, threads: int, runs: int) -> float:
    """Median of invoke() alone: edge.harness.latency times a whole session call (input
    conversion, output copies), which on 0.1-0.5 ms ops would swamp the op's own cost."""
    import numpy as np

    from edge.runtimes.litert import interpreter_class

    interpreter, _ = interpreter_class()
    it = interpreter(model_content=blob, num_threads=threads)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.random.default_rng(1).standard_normal(d["shape"]).astype(np.float32))
    for _ in range(10):
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="56x96,28x256", help="feature maps as SIDExCHANNELS, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated op kinds among: {', '.join(KINDS)}")
    a = ap.parse_args()
    kinds = [k.strip() for k in a.kinds.split(",")]
    if unknown := [k for k in kinds if k not in KINDS]:
        ap.error(f"unknown kind(s) {', '.join(unknown)}; choose among: {', '.join(KINDS)}")
    print(f"CPU int8-relevant flags: {_cpu_flags()}; threads={a.threads}; median of {a.runs}; 4 ops of each kind")
    print(f"{'op':40}{'map':>12}{'fp32 ms':>10}{'int8 ms':>10}{'int8 speed-up':>15}")
    for shape in a.shapes.split(","):
        side, channels = (int(v) for v in shape.split("x"))
        for kind in kinds:
            f32 = _median_ms(_convert(kind, side, channels, False), a.threads, a.runs)
            i8 = _median_ms(_convert(kind, side, channels, True), a.threads, a.runs)
            print(f"{kind:40}{f'{side}x{side}x{channels}':>12}{f32:10.3f}{i8:10.3f}{f32 / i8:14.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
