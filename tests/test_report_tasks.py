"""The report's work queue (edge/report/build.py): tasks run on spawned worker processes come back
in their own order whatever order the queue ran them in, and a worker that dies (a converter's
native abort) is one clear error, not a hung or half-written report."""

from __future__ import annotations

import os

import pytest


def _square(x: int, *, threads: int) -> tuple[int, int]:
    return x * x, threads


def _abort(*, threads: int) -> None:
    os.abort()


def test_answers_keep_the_order_of_the_tasks() -> None:
    from edge.report.build import Task, run_tasks

    tasks = [Task("small", _square, (2,), cost=1.0), Task("big", _square, (3,), cost=9.0),
             Task("mid", _square, (4,), cost=5.0)]
    assert run_tasks(tasks, 2, 2) == [(4, 1), (9, 1), (16, 1)]  # two workers: one thread each
    assert run_tasks(tasks, 1, 2) == [(4, 2), (9, 2), (16, 2)]  # in this process: all the threads


def test_a_dying_worker_is_one_clear_error() -> None:
    from edge.errors import EdgeError
    from edge.report.build import Task, run_tasks

    with pytest.raises(EdgeError, match="worker process died while running boom"):
        run_tasks([Task("boom", _abort, (), cost=2.0), Task("fine", _square, (1,))], 2, 2)


def test_a_dying_worker_can_be_one_answer() -> None:
    """The matrix's way: the crashed task answers Crashed, the others still run (on a fresh process)."""
    from edge.report.build import Crashed, Task, run_tasks

    tasks = [Task("boom", _abort, (), cost=2.0), Task("a", _square, (2,)), Task("b", _square, (3,))]
    answers = run_tasks(tasks, 1, 2, crashes=True)
    assert isinstance(answers[0], Crashed) and answers[0].label == "boom"
    assert answers[1:] == [(4, 2), (9, 2)]


def test_a_crashed_row_is_a_row_with_the_reason() -> None:
    """The report runs its tasks with crashes=True on worker processes: a converter's native abort
    (the TFLite quantizer aborted on a model whose activations reach 1e6) is that row's note, and
    the other rows still come out."""
    from edge.report.build import Crashed
    from edge.report.run import ReportRun
    from edge.report.schema import empty_row

    row = empty_row("tflite", "int8", "ptq")
    ReportRun.finish(None, row, Crashed("tflite int8"))  # type: ignore[arg-type]  # self: not read for a crash
    assert row["top1"] is None and row["latency_ms"] is None
    assert "not exported: its worker process died" in row["note"]
