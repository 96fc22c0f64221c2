"""A task listener that listens to nothing, for tests of the pool's parts without jobs."""

from __future__ import annotations

from framering.tasks import Task


class IgnoringListener:
    """``TaskListener`` doing nothing: the scheduler and worker handles only call it."""

    def task_dispatched(self, task: Task) -> None:
        pass

    def task_requeued(self, task: Task) -> None:
        pass

    def task_done(self, task: Task, worker_ns: int) -> None:
        pass

    def task_failed(self, task: Task, cause: str) -> None:
        pass
