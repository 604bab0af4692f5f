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
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
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


def build_or_take(exporter: Any, request: Any, dest: Path, reuse: dict[str, Any] | None) -> tuple[Built, Any]:
    """The artifact of ``request`` built into ``dest`` — or, with ``reuse`` (its manifest), the one
    already there — and the PyTorch program it should reproduce."""
    if reuse is not None:
        artifact = dest / exporter.filename(request.model, request.recipe.precision)
        return Built(artifact, reuse, float(reuse["export_seconds"])), exporter.reference(request)
    result = exporter.build(request, dest)
    return Built(result.artifact, result.manifest, result.seconds), result.reference


def check_built(request: Any, built: Built, reference: Any, held: Held, threads: int) -> Verification:
    """The artifact run on its runtime against float and the program it was converted from."""
    assert built.artifact is not None
    return verify_artifact(request.model, built.artifact, reference, held.images, held.labels, held.float_outputs,
                           threads)


def export_and_check(exporter: Any, request: Any, dest: Path, reuse: dict[str, Any] | None, held: Held, *,
                     threads: int) -> Judged:
    """Build ``request`` into ``dest`` (or take the artifact there whose manifest is ``reuse``),
    then run it on its runtime against float and the program it was converted from."""
    key, t0 = request.key(), time.perf_counter()
    try:
        built, reference = build_or_take(exporter, request, dest, reuse)
    except EdgeError as exc:  # becomes the row's note
        return Judged(key, Built(None, None, time.perf_counter() - t0, exc), False, None)
    return Judged(key, built, reuse is not None, check_built(request, built, reference, held, threads))


@dataclass(frozen=True)
class Task:
    """One piece of work: ``fn(*args, threads=N)`` (N: the threads it may use where it runs), with a
    label for the console and a rough cost that orders the workers' queue (longest first, so the
    pool does not end on one long task)."""

    label: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    cost: float = 1.0
    summary: Callable[[Any], str] | None = None  # the answer in a few words, for the console


@dataclass(frozen=True)
class Crashed:
    """The answer of a task whose worker process died (a converter's native abort), when the
    caller asked for such answers instead of an error."""

    label: str

    @property
    def reason(self) -> str:
        return "its worker process died (a crash in native code; its last messages are in the run's log)"


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _timed(fn: Callable[..., Any], args: tuple[Any, ...], threads: int) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return fn(*args, threads=threads), time.perf_counter() - t0


def _done(task: Task, answer: Any, seconds: float, where: str = "") -> None:
    label = f"{where}{task.label}"
    if isinstance(answer, Crashed):
        say(f"{label}: {answer.reason}")
        return
    if task.summary is not None:
        say(f"{label}: {task.summary(answer)} ({seconds:.1f} s)")
        return
    if not isinstance(answer, Judged):
        say(f"{label}: done in {seconds:.1f} s")
        return
    b = answer.built
    if b.error is not None:
        say(f"{label}: not exported: {b.error}")
    elif not answer.reused and b.manifest is not None:
        say(f"{label}: wrote {b.artifact} ({b.manifest['size_bytes'] / 1e6:.2f} MB) in {b.seconds:.1f} s, "
            f"checked on its runtime in {seconds - b.seconds:.1f} s")
    else:
        say(f"{label}: done in {seconds:.1f} s")


def run_tasks(tasks: list[Task], workers: int, threads: int, crashes: bool = False,
              tasks_per_worker: int | None = None) -> list[Any]:
    """Run ``tasks`` — in this process with one worker, else on ``workers`` spawned processes (a
    forked torch may hang in its thread pools) — and return their answers in the order of ``tasks``.
    ``threads``: what all of them share; each worker gets its part. ``crashes``: a task whose
    process dies answers ``Crashed`` (tasks then always run in worker processes, so one crash
    costs one answer) instead of failing the run. ``tasks_per_worker``: a worker process is
    replaced after that many tasks (what a converter leaks goes with it)."""
    workers = max(1, min(workers, len(tasks)))
    threads = max(1, threads // workers)
    answers: list[Any] = [None] * len(tasks)
    if workers < 2 and not crashes:
        for i, task in enumerate(tasks):
            say(f"[{i + 1}/{len(tasks)}] {task.label}")
            answers[i], seconds = _timed(task.fn, task.args, threads)
            _done(task, answers[i], seconds)
        return answers
    names = ": " + ", ".join(t.label for t in tasks) if len(tasks) <= 10 else ""
    say(f"[parallel] {len(tasks)} tasks on {workers} process{'es' if workers > 1 else ''}{names}")
    order = deque(sorted(range(len(tasks)), key=lambda i: -tasks[i].cost))
    ctx = multiprocessing.get_context("spawn")

    def lane() -> ProcessPoolExecutor:  # one process each, so a death is pinned on its one task
        return ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker, initargs=(threads,),
                                   max_tasks_per_child=tasks_per_worker)

    lanes = [lane() for _ in range(workers)]
    free, finished = list(range(workers)), 0
    running: dict[Future[Any], tuple[int, int]] = {}
    try:
        while order or running:
            while order and free:
                at, i = free.pop(), order.popleft()
                running[lanes[at].submit(_timed, tasks[i].fn, tasks[i].args, threads)] = (i, at)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                i, at = running.pop(fut)
                try:
                    answers[i], seconds = fut.result()
                except BrokenProcessPool:  # a converter killed its process (an abort in native code)
                    if not crashes:
                        raise EdgeError(f"a worker process died while running {tasks[i].label} (a crash in a "
                                        "converter's native code: its last messages are in the run's log); "
                                        "--workers 1 runs the tasks in this process") from None
                    answers[i], seconds = Crashed(tasks[i].label), 0.0
                    lanes[at].shutdown(wait=False)
                    lanes[at] = lane()
                free.append(at)
                finished += 1
                _done(tasks[i], answers[i], seconds, f"[{finished}/{len(tasks)}] ")
    finally:
        for pool in lanes:
            pool.shutdown(wait=not running, cancel_futures=True)
    return answers
