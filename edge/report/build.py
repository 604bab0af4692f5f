"""The report's heavy, independent work — each row's export and its check on the runtime, and
the per-layer sensitivity — as tasks, side by side in worker processes.

Why: an export is mostly single-threaded Python (tracing, graph passes, converters), so on a
machine with two or more cores independent exports finish sooner in parallel. Latency is measured
only after every task is done, in the report's own process, so the workers never disturb timing.

A worker gets the exporter and the request (the model travels pickled, with any re-estimated
BatchNorm statistics), writes the artifact atomically as a serial build would, runs it on its
runtime, and hands back the figures; the report's process alone records artifacts in the cache.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import EdgeError
from edge.harness import Verification, verify_artifact
from edge.progress import say


@dataclass(frozen=True)
class Built:
    """The artifact and its manifest, or the user-fixable error that stopped its build."""

    artifact: Path | None
    manifest: dict[str, Any] | None
    seconds: float
    error: EdgeError | None = None


@dataclass(frozen=True)
class Held:
    """What every artifact is judged on: the held-out images, their labels and float outputs."""

    images: np.ndarray
    labels: list[int | None] | None
    float_outputs: list[np.ndarray]


@dataclass(frozen=True)
class Judged:
    """One row's work, done: the build (or the reused artifact) and its verification on the runtime."""

    key: str  # the recipe key (exporters.base.ExportRequest.key)
    built: Built
    reused: bool
    verification: Verification | None


def export_and_check(exporter: Any, request: Any, dest: Path, reuse: dict[str, Any] | None, held: Held, *,
                     threads: int) -> Judged:
    """Build ``request`` into ``dest`` (or take the artifact there whose manifest is ``reuse``),
    then run it on its runtime against float and the program it was converted from."""
    key, t0 = request.key(), time.perf_counter()
    try:
        if reuse is not None:
            artifact = dest / exporter.filename(request.model, request.recipe.precision)
            built, reference = Built(artifact, reuse, float(reuse["export_seconds"])), exporter.reference(request)
        else:
            result = exporter.build(request, dest)
            built, reference = Built(result.artifact, result.manifest, result.seconds), result.reference
    except EdgeError as exc:  # becomes the row's note
        return Judged(key, Built(None, None, time.perf_counter() - t0, exc), False, None)
    assert built.artifact is not None
    ver = verify_artifact(request.model, built.artifact, reference, held.images, held.labels, held.float_outputs,
                          threads)
    return Judged(key, built, reuse is not None, ver)


@dataclass(frozen=True)
class Task:
    """One piece of work: ``fn(*args, threads=N)`` (N: the threads it may use where it runs), with a
    label for the console and a rough cost that orders the workers' queue (longest first, so the
    pool does not end on one long task)."""

    label: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    cost: float = 1.0


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _timed(fn: Callable[..., Any], args: tuple[Any, ...], threads: int) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return fn(*args, threads=threads), time.perf_counter() - t0


def _done(task: Task, answer: Any, seconds: float) -> None:
    if not isinstance(answer, Judged):
        say(f"{task.label}: done in {seconds:.1f} s")
        return
    b = answer.built
    if b.error is not None:
        say(f"{task.label}: not exported: {b.error}")
    elif not answer.reused and b.manifest is not None:
        say(f"{task.label}: wrote {b.artifact} ({b.manifest['size_bytes'] / 1e6:.2f} MB) in {b.seconds:.1f} s, "
            f"checked on its runtime in {seconds - b.seconds:.1f} s")
    else:
        say(f"{task.label}: done in {seconds:.1f} s")


def run_tasks(tasks: list[Task], workers: int, threads: int) -> list[Any]:
    """Run ``tasks`` — in this process with one worker, else on ``workers`` spawned processes (a
    forked torch may hang in its thread pools) — and return their answers in the order of ``tasks``.
    ``threads``: what all of them share; each worker gets its part."""
    workers = max(1, min(workers, len(tasks)))
    threads = max(1, threads // workers)
    answers: list[Any] = [None] * len(tasks)
    if workers < 2:
        for i, task in enumerate(tasks):
            say(f"[{i + 1}/{len(tasks)}] {task.label}")
            answers[i], seconds = _timed(task.fn, task.args, threads)
            _done(task, answers[i], seconds)
        return answers
    say(f"[parallel] {len(tasks)} tasks on {workers} processes: " + ", ".join(t.label for t in tasks))
    order = sorted(range(len(tasks)), key=lambda i: -tasks[i].cost)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        futures: dict[Future[Any], int] = {pool.submit(_timed, tasks[i].fn, tasks[i].args, threads): i for i in order}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                answers[i], seconds = fut.result()
            except BrokenProcessPool:  # a converter killed its process (an abort in native code)
                raise EdgeError(f"a worker process died while running {tasks[i].label} (a crash in a converter's "
                                "native code: its last messages are in the run's log); --workers 1 runs the "
                                "tasks in this process") from None
            _done(tasks[i], answers[i], seconds)
    return answers
