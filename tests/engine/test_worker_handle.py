"""A worker's handle remembers the order its tasks were written in, which is what tells after
its death the one task it may have started (no process is started: the pipe is a pair)."""

from __future__ import annotations

import multiprocessing

from framering.tasks import Task
from framering.workers import WorkerHandle
from tests.listeners import IgnoringListener


def handle() -> tuple[WorkerHandle, multiprocessing.connection.Connection]:
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=print)  # never started
    return WorkerHandle(0, process, ours), theirs


def task(number: int) -> Task:
    return Task(id=number, deadline_s=5.0, listener=IgnoringListener(), attempts=1)


def test_the_task_written_first_is_the_one_a_dead_worker_may_have_started() -> None:
    worker, other_end = handle()
    assigned_first, written_first, never_written = task(1), task(2), task(3)
    # assigned in one order (the inflight dict), written in the other (two threads sending)
    assert worker.send(b"second assigned", written_first)
    assert worker.send(b"first assigned", assigned_first)
    tasks = [assigned_first, written_first, never_written]
    assert worker.first_written(tasks) is written_first
    assert worker.first_written([never_written]) is None
    assert other_end.recv_bytes() == b"second assigned"


def test_a_mark_left_by_an_earlier_attempt_does_not_count() -> None:
    worker, _ = handle()
    retried, fresh = task(1), task(2)
    assert worker.send(b"attempt 1", retried)
    retried.attempts = 2  # its first attempt failed; the second is assigned here, not sent yet
    assert worker.send(b"fresh", fresh)
    assert worker.first_written([retried, fresh]) is fresh


def test_a_write_to_a_closed_pipe_still_counts_as_made() -> None:
    """The only error a note can then cause is an attempt spent that was not used."""
    worker, other_end = handle()
    other_end.close()
    worker.conn.close()
    lost = task(1)
    assert not worker.send(b"nobody reads this", lost)
    assert worker.first_written([lost]) is lost
