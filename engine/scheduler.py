"""Which task runs next, and on which worker: the pool's dispatch policy, in one place.

Today: one queue, oldest first, with retries at the front; each task goes to the ready worker
holding the fewest tasks, while it holds fewer than ``MAX_QUEUED_PER_WORKER``. Every method
runs under the pool's lock and only moves tasks between lists: sending is the pool's job,
outside the lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Final

from framering.tasks import Task
from framering.workers import WorkerHandle, WorkerState

# Tasks a worker may hold at once (the one it composites plus the ones queued in its pipe).
# Two keeps a worker busy across the round trip of a completion (it starts the next task
# while the manager handles the last); more only makes a dead worker's backlog longer.
MAX_QUEUED_PER_WORKER: Final = 2


class FifoScheduler:
    """Tasks waiting for a worker, and the rule that hands them out."""

    def __init__(self, max_attempts: int) -> None:
        self._max_attempts = max_attempts
        self._pending: deque[Task] = deque()
        self.retries = 0
        """Tasks queued again after a failed or lost attempt."""

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, task: Task) -> None:
        self._pending.append(task)

    def retry(self, task: Task, closing: bool) -> bool:
        """Queue a task whose attempt failed or was lost, at the front, if it may be retried:
        attempts left, a retry can still give the right result, and the pool is not closing."""
        if closing or not task.retryable or task.attempts >= self._max_attempts:
            return False
        self.retries += 1
        self._pending.appendleft(task)
        task.listener.task_requeued(task)
        return True

    def put_back(self, task: Task) -> None:
        """A task assigned but never sent goes back to the front, as if never taken."""
        self._pending.appendleft(task)
        task.listener.task_requeued(task)

    def remove(self, task: Task) -> bool:
        """Take a waiting task off the queue; False if it is not waiting."""
        try:
            self._pending.remove(task)
        except ValueError:
            return False
        return True

    def take_all(self) -> list[Task]:
        """Empty the queue (the pool stops or broke); returns what waited."""
        tasks = list(self._pending)
        self._pending.clear()
        return tasks

    def assign(self, workers: Sequence[WorkerHandle]) -> list[tuple[WorkerHandle, Task]]:
        """Move waiting tasks to the least-loaded ready workers; returns what to send."""
        sends: list[tuple[WorkerHandle, Task]] = []
        if not self._pending:
            return sends  # the common case on every completion
        while self._pending:
            ready = [w for w in workers if w.state is WorkerState.READY]
            if not ready:
                break
            worker = min(ready, key=lambda w: len(w.inflight))
            if len(worker.inflight) >= MAX_QUEUED_PER_WORKER:
                break
            task = self._pending.popleft()
            task.attempts += 1
            if not worker.inflight:
                worker.head_since = time.monotonic()
            worker.inflight[task.id] = task
            task.listener.task_dispatched(task)
            sends.append((worker, task))
        return sends
