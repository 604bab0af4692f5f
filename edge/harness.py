"""The staged harness every target shares: export → (quantize) → lower → run on the real runtime →
compare with the float model and with the program that was converted (ExecuTorch tester style)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.metrics import compare, latency_summary
from edge.models import LoadedModel
from edge.progress import bar
from edge.runtimes import runtime_for
from edge.runtimes.base import Session


@dataclass
class Verification:
    """An artifact's figures on held-out images, against float and against its own program."""

    artifact: Path
    vs_float: dict[str, float | None]
    vs_reference: dict[str, float | None] | None
    # the program itself (e.g. fake-quant PyTorch) against float: what quantization alone costs,
    # so a loss can be pinned on quantization or on conversion/runtime
    reference_vs_float: dict[str, float | None] | None = None
    latency: dict[str, Any] | None = None
    measured: bool = True
    notes: list[str] = field(default_factory=list)


# a session that takes any batch (PyTorch) runs in chunks of this many images: a whole evaluation set
# at once is memory-bound (a fake-quant program at 224 px ran twice as slow in one batch of 64)
CHUNK = 8


def run_session(session: Session, images: np.ndarray, desc: str | None = None) -> list[np.ndarray]:
    """Run every image through the session (batch-1 artifacts one at a time)."""
    step = CHUNK if session.batch_size is None else session.batch_size
    parts: list[list[np.ndarray]] = []
    with bar(total=len(images), desc=desc, unit="img") as pbar:
        for i in range(0, len(images), step):
            parts.append(session.run(images[i : i + step]))
            pbar.update(min(step, len(images) - i))
    return [np.concatenate(p, axis=0) for p in zip(*parts, strict=True)]


def run_torch(module: Any, images: np.ndarray) -> list[np.ndarray]:
    return run_session(runtime_for("pytorch").load(module), images)


def latency(session: Session, example: np.ndarray, runs: int = 50, warmup: int = 5,
            threads: int | None = None, desc: str | None = None) -> dict[str, Any]:
    """Wall-clock latency of one forward: warm-up, then ``runs`` timed calls; p50/p90 in ms."""
    x = example[:1] if session.batch_size == 1 else example
    for _ in range(warmup):
        session.run(x)
    times = []
    with bar(total=runs, desc=desc, unit="run") as pbar:
        for _ in range(runs):
            t0 = time.perf_counter()
            session.run(x)
            times.append((time.perf_counter() - t0) * 1e3)
            pbar.update(1)
    summary = latency_summary(times)
    return {
        **{k: summary[k] for k in ("p50", "p90", "min")},
        "runs": runs,
        "threads": threads,
        "batch": int(x.shape[0]),
    }


def verify_artifact(
    model: LoadedModel,
    artifact: Path,
    reference: Any,
    images: np.ndarray,
    labels: list[int | None] | None,
    float_outputs: list[np.ndarray] | None = None,
    threads: int | None = None,
    runtime_options: dict[str, str] | None = None,
) -> Verification:
    """Run ``artifact`` on its real runtime and compare it with float and with ``reference``.

    Where the runtime cannot run on this host (Core ML off macOS), the figures come from the
    PyTorch program the artifact was converted from, and the result says so (measured=False).
    """
    runtime = runtime_for(artifact, **(runtime_options or {}))
    ref_float = float_outputs if float_outputs is not None else run_torch(model.module, images)
    classifier = model.spec.mode == "classifier"
    reason = runtime.unavailable_reason()
    if reason:
        program = reference if reference is not None else model.module
        # the float program's outputs are the float outputs: not run a second time
        outs = ref_float if program is model.module else run_torch(program, images)
        note = f"simulated — {reason}: figures are from the PyTorch program that was converted"
        return Verification(artifact, compare(ref_float, outs, labels, classifier), None, measured=False,
                            notes=[note])
    session = runtime.load(artifact, threads=threads)
    outs = run_session(session, images, desc=f"running {artifact.name}")
    vs_float = compare(ref_float, outs, labels, classifier)
    vs_ref = ref_vs_float = None
    if reference is not None and reference is not model.module:
        ref_outs = run_torch(reference, images)
        vs_ref = compare(ref_outs, outs, labels, classifier)
        ref_vs_float = compare(ref_float, ref_outs, labels, classifier)
    return Verification(artifact, vs_float, vs_ref, ref_vs_float, measured=runtime.measured)
