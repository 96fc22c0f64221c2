"""Which task runs next, and on which worker: the pool's dispatch policy, in one place.

Three classes of waiting task, served in this order:

1. **Retries** (and tasks handed back unsent), oldest first: they were due already.
2. **Paced frames**, those with a tick (``Stream.stream`` submits each frame with the time it
   is due): earliest deadline first, whichever stream they belong to. A stream that submits
   as fast as it can has no tick, so it can never push a paced frame back.
3. **Everything else**, shared by weight between the streams (each stream is a
   :class:`Flow`) with deficit round robin charged in measured worker time: a task is charged
   its flow's recent mean cost when dispatched, and the difference to the worker's measured
   time when it ends. Over any busy stretch each flow gets worker time in proportion to its
   weight, however different its frames' costs.

Each task goes to the ready worker holding the fewest tasks, while it holds fewer than
``MAX_QUEUED_PER_WORKER``, with one exception, **packing**: a short task without a tick (its
flow's estimate at most ``PACK_TASK_NS``) that would wake an idle worker goes instead to a
busy one whose queued work is short too (at most ``PACK_QUEUED_NS`` by its flows' estimates,
fewer than ``MAX_PACKED_PER_WORKER`` tasks). A worker that sleeps and is woken for every short
frame costs more CPU than the frame: on a 2-vCPU EPYC VM, animated studio frames with damage
tracking (about 150 us of compositing each, back to back, 5 in flight, blocks alternated in
one process) took 207 us of worker CPU and 144 us of the parent's a frame spread over both
workers (4,650 fps), 160 us and 126 us packed (5,980 fps; medians of 6 blocks each). Paced
frames, retries and the bands of one frame (``Task.spread``) are never packed: they want a
worker of their own now.

Every method runs under the pool's lock and only moves tasks between lists: sending is the
pool's job, outside the lock.
"""

from __future__ import annotations

import heapq
import itertools
import math
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
# Packing (module docstring): most tasks a busy worker may hold when it is given one that would
# otherwise wake an idle worker, and most work (its flows' estimates) queued on it, which is
# also the most a packed frame waits for the frames ahead of it. The third place is what keeps
# one worker busy while the parent alone feeds it short frames (with at most two, every third
# frame woke the other worker, and nothing was gained). Measured against spreading, blocks
# alternated in one process, 2 workers, studio-1080p: with 1 ms, animated frames with damage
# 1.39x the fps but whole frames 0.88x (three of them, 1.2 ms, went to one worker while the
# other slept); with 0.3 ms nothing changed (two short frames already filled it); with 0.5 ms
# animated with damage 1.28x, whole frames, two layers moved and still frames 1.00x-1.02x.
# Three more runs later, in a slower stretch of the VM: animated with damage 1.31x-1.37x, two
# moved 0.95x-0.97x (one worker then does all, and two would have kept up), whole frames
# 0.95x-1.06x (noise: from the third run on they were no longer packed at all, below).
MAX_PACKED_PER_WORKER: Final = 3
PACK_QUEUED_NS: Final = 500_000
# Longest task that is packed (its flow's estimate): a quarter of a millisecond is past the
# frames a wake-up costs most to (damage-tracked ones, 100-250 us here), and short of a whole
# 1080p frame (about 0.4 ms) and of a transform's first estimate (2 ms), which take the idle
# worker.
PACK_TASK_NS: Final = 250_000
# Worker time a flow of weight 1 is credited per round of deficit round robin. Near one
# frame's cost, so a round is short and a light flow waits at most about one frame per flow.
QUANTUM_NS: Final = 2_000_000
# While paced frames are coming (one was queued this recently), a task without a tick goes only
# to a worker holding nothing: a paced frame then waits behind at most one task per worker,
# never behind a second one queued in a pipe.
PACED_RECENT_S: Final = 1.0
# What a task is charged before any of its flow's tasks was measured, and a task whose pixels
# are not known (a transform).
FIRST_COST_NS: Final = 2_000_000
# A first guess of compositing cost per output pixel (about 1 ms per 1080p frame), until a
# flow's own tasks are measured.
FIRST_NS_PER_PIXEL: Final = 0.5
# Weight of the newest measurement in a flow's mean cost: it follows a change of scene within
# a few frames, without one slow frame moving it much.
COST_SMOOTHING: Final = 0.2


class Flow:
    """One stream's share of the pool: its weight, its waiting unpaced tasks, and its deficit
    (worker time it may still use this round; negative when it overdrew)."""

    def __init__(self, name: str, weight: float) -> None:
        self.name = name
        self.weight = weight
        self.waiting: deque[Task] = deque()
        self.deficit_ns = 0.0
        self.ns_per_pixel = FIRST_NS_PER_PIXEL
        """Recent mean worker time per output pixel of its tasks: a task is charged this
        times its pixels at dispatch (a band costs its share of a whole frame)."""

    def estimate_ns(self, pixels: int) -> float:
        """Worker time a task of ``pixels`` output pixels of this flow is expected to take."""
        return self.ns_per_pixel * pixels if pixels else float(FIRST_COST_NS)

    def __repr__(self) -> str:
        return f"Flow({self.name!r}, weight={self.weight:g}, waiting={len(self.waiting)})"


class FairScheduler:
    """Tasks waiting for a worker, and the rule that hands them out (module docstring)."""

    def __init__(self, max_attempts: int) -> None:
        self._max_attempts = max_attempts
        self.default_flow = Flow("default", 1.0)
        """The flow of tasks that name none (transforms, and frames of the default stream)."""
        self._retries: deque[Task] = deque()
        self._paced: list[tuple[float, int, Task]] = []  # a heap, by tick
        self._order = itertools.count()  # ties of equal ticks go oldest first
        self._active: deque[Flow] = deque()  # flows with unpaced tasks, in round-robin order
        self._count = 0
        self._paced_at = -PACED_RECENT_S  # time.monotonic() a paced task was last queued
        self.retries = 0
        """Tasks queued again after a failed or lost attempt."""

    def __len__(self) -> int:
        return self._count

    # ------------------------------------------------------------------ queueing
    def add(self, task: Task) -> None:
        """Queue a task. Each step leaves the queue one that :meth:`repair` makes whole, should
        an interrupt (Ctrl-C on a caller's thread) land between two of them."""
        if task.tick is not None:
            heapq.heappush(self._paced, (task.tick, next(self._order), task))
            self._paced_at = time.monotonic()
        else:
            flow = task.flow or self.default_flow
            if not flow.waiting:
                self._active.append(flow)
            flow.waiting.append(task)
        self._count += 1

    def retry(self, task: Task, closing: bool) -> bool:
        """Queue a task whose attempt failed or was lost, at the front, if it may be retried:
        attempts left, a retry can still give the right result, and the pool is not closing."""
        if closing or not task.retryable or task.attempts >= self._max_attempts:
            return False
        self.retries += 1
        self.put_back(task)
        return True

    def put_back(self, task: Task) -> None:
        """A task taken from the queue and not done goes back to the front, as if never taken."""
        self._retries.appendleft(task)
        self._count += 1
        task.listener.task_requeued(task)

    def repair(self) -> None:
        """Make the queue whole again after an interrupt landed inside one of its changes: the
        count of what waits, and the round robin holding exactly the flows that have tasks
        waiting (``add`` always enters a flow in the round before its task)."""
        self._active = deque(flow for flow in self._active if flow.waiting)
        self._count = (
            len(self._retries) + len(self._paced) + sum(len(flow.waiting) for flow in self._active)
        )

    def remove(self, task: Task) -> bool:
        """Take a waiting task off the queue; False if it is not waiting (a rare path: a
        submit interrupted between queueing and sending)."""
        if task in self._retries:
            self._retries.remove(task)
        elif any(entry[2] is task for entry in self._paced):
            self._paced = [entry for entry in self._paced if entry[2] is not task]
            heapq.heapify(self._paced)
        else:
            flow = task.flow or self.default_flow
            if task not in flow.waiting:
                return False
            flow.waiting.remove(task)
            if not flow.waiting:
                self._active.remove(flow)
        self._count -= 1
        return True

    def take_all(self) -> list[Task]:
        """Empty the queue (the pool stops or broke); returns what waited."""
        tasks = list(self._retries) + [entry[2] for entry in sorted(self._paced)]
        for flow in self._active:
            tasks += flow.waiting
            flow.waiting.clear()
        self._retries.clear()
        self._paced.clear()
        self._active.clear()
        self._count = 0
        return tasks

    # ------------------------------------------------------------------ dispatch
    def assign(
        self,
        workers: Sequence[WorkerHandle],
        sends: list[tuple[WorkerHandle, Task]] | None = None,
    ) -> list[tuple[WorkerHandle, Task]]:
        """Move waiting tasks to the least-loaded ready workers; returns what to send (into
        ``sends``, if given). Each task is listed there before it leaves the queue, so that a
        caller interrupted in the middle knows every task this call may have taken
        (``WorkerPool.submit``)."""
        if sends is None:
            sends = []
        if not self._count:
            return sends  # the common case on every completion
        paced_live = self.paced_live()
        while self._count:
            ready = [w for w in workers if w.state is WorkerState.READY]
            if not ready:
                break
            task = self._upcoming()
            worker = self._worker_for(task, ready, paced_live)
            if worker is None:
                break
            sends.append((worker, task))
            self.pop_next()  # takes `task`
            task.attempts += 1
            if not worker.inflight:
                worker.head_since = time.monotonic()
            worker.inflight[task.id] = task
            task.listener.task_dispatched(task)
        return sends

    def take_back(self, sends: list[tuple[WorkerHandle, Task]]) -> None:
        """Undo an :meth:`assign` an interrupt cut short (``sends``: what it listed): each task
        goes back to the front of the queue and out of its worker's hands, and the queue is
        made whole. An interrupt between counting a task's attempt and handing it over spends
        that attempt: never one too few."""
        self.repair()
        for worker, task in reversed(sends):
            self.remove(task)  # (interrupted before it left the queue)
            if worker.inflight.pop(task.id, None) is task:
                task.attempts -= 1
            self.put_back(task)
        self.repair()

    def _worker_for(
        self, task: Task, ready: list[WorkerHandle], paced_live: bool
    ) -> WorkerHandle | None:
        """The worker the next task (``task``) goes to, or None if it waits."""
        least = min(ready, key=lambda w: len(w.inflight))
        unpaced = not self._retries and not self._paced  # the next task is a flow's
        if unpaced and paced_live:
            # unpaced work waits for an idle worker (PACED_RECENT_S)
            return None if least.inflight else least
        if (
            unpaced
            and not task.spread
            and not least.inflight
            and self._estimate_ns(task) <= PACK_TASK_NS
        ):
            packed = self._packing_target(ready)
            if packed is not None:
                return packed
        return None if len(least.inflight) >= MAX_QUEUED_PER_WORKER else least

    def _packing_target(self, ready: list[WorkerHandle]) -> WorkerHandle | None:
        """The busiest worker that may still be given a short task instead of an idle worker
        (module docstring), or None."""
        best = None
        for worker in ready:
            held = len(worker.inflight)
            if not 0 < held < MAX_PACKED_PER_WORKER:
                continue
            if best is not None and held <= len(best.inflight):
                continue
            queued = sum(self._estimate_ns(t) for t in worker.inflight.values())
            if queued <= PACK_QUEUED_NS:
                best = worker
        return best

    def _estimate_ns(self, task: Task) -> float:
        return (task.flow or self.default_flow).estimate_ns(task.pixels)

    def _upcoming(self) -> Task:
        """The task :meth:`pop_next` would take now (one is waiting), left in place."""
        if self._retries:
            return self._retries[0]
        if self._paced:
            return self._paced[0][2]
        return self._fair_flow().waiting[0]

    def paced_live(self) -> bool:
        """Paced frames are coming (one was queued within ``PACED_RECENT_S``)."""
        return time.monotonic() - self._paced_at < PACED_RECENT_S

    def pop_next(self) -> Task:
        """Take the task to run next off the queue (one is waiting): what :meth:`assign` hands
        the least-loaded worker."""
        self._count -= 1
        if self._retries:
            return self._retries.popleft()
        if self._paced:
            return heapq.heappop(self._paced)[2]
        return self._next_fair()

    def _next_fair(self) -> Task:
        """Deficit round robin: the flow at the head is served while it has credit, then the
        next; once no flow has credit, each is credited its weight's quantum (as many rounds
        at once as it takes for one to have credit again)."""
        flow = self._fair_flow()
        task = flow.waiting.popleft()
        task.charged_ns = flow.estimate_ns(task.pixels)
        flow.deficit_ns -= task.charged_ns
        if not flow.waiting:  # leaves the round; unused credit is not saved up, debt is kept
            self._active.popleft()
            flow.deficit_ns = min(flow.deficit_ns, 0.0)
        return task

    def _fair_flow(self) -> Flow:
        """The flow deficit round robin serves next, brought to the head of the round (the
        rotations and credits are the same whether or not a task is then taken)."""
        for _ in range(len(self._active)):
            if self._active[0].deficit_ns > 0:
                break
            self._active.rotate(-1)
        else:
            rounds = min(
                math.floor(-flow.deficit_ns / (QUANTUM_NS * flow.weight)) + 1
                for flow in self._active
            )
            for flow in self._active:
                flow.deficit_ns += rounds * QUANTUM_NS * flow.weight
            while not any(flow.deficit_ns > 0 for flow in self._active):
                for flow in self._active:  # rounding left the closest one at exactly 0
                    flow.deficit_ns += QUANTUM_NS * flow.weight
            while self._active[0].deficit_ns <= 0:
                self._active.rotate(-1)
        return self._active[0]

    def charge(self, task: Task, worker_ns: int) -> None:
        """A task ended after ``worker_ns`` of measured worker time: update its flow's mean
        cost, and correct what the round robin charged it (paced tasks are outside it)."""
        flow = task.flow or self.default_flow
        pixels = task.pixels
        if pixels:
            flow.ns_per_pixel += COST_SMOOTHING * (worker_ns / pixels - flow.ns_per_pixel)
        if task.charged_ns is not None:
            flow.deficit_ns += task.charged_ns - worker_ns
            task.charged_ns = None

    def pressure(self, now: float, wait_limit: float) -> str | None:
        """Why the pool needs another worker now (``now``: ``time.perf_counter()``), or None:
        the most urgent paced frame is nearer its tick than it takes to composite, or a task
        has waited longer than ``wait_limit`` seconds."""
        if self._paced:
            tick, _, task = self._paced[0]
            flow = task.flow or self.default_flow
            if tick - now < flow.estimate_ns(task.pixels) / 1e9:
                return (
                    f"a paced frame of stream {flow.name!r} still waits {1e3 * (tick - now):.1f} "
                    f"ms before its tick"
                )
        heads = [flow.waiting[0] for flow in self._active]
        if self._retries:
            heads.append(self._retries[0])
        if heads:
            waited = now - min(task.submitted_ns for task in heads) / 1e9
            if waited > wait_limit:
                return f"work waited {1e3 * waited:.0f} ms for a worker"
        return None
