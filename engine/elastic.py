"""An elastic pool: how many workers, and when to start, retire or recycle one.

The pool is sized between ``min_workers`` and ``max_workers`` (both one per physical core by
default, which keeps the pool fixed):

- **Grow** by one worker, when no worker is starting already, while the scheduler reports
  pressure: a paced frame that would miss its tick unless a worker took it now, or work that
  has waited longer than ``GROW_WAIT_S`` (``FairScheduler.pressure``).
- **Shrink** by one worker at a time, when nothing waits and a ready worker has held no task
  for ``idle_timeout`` seconds, and the pool has not grown for as long (the hysteresis: a pool
  that just grew for a burst keeps its worker through the next one).
- **Recycle** a worker whose private memory passed ``max_worker_rss``: it takes no new task,
  a replacement starts at once, and it stops once its tasks are done.

Nothing in flight is touched: a retired or recycled worker takes no new task and stops only
after its last one (normally a worker is retired only when idle; see the budget below). The
decisions here are pure; the pool's manager thread acts on them.

Several engines in one process can share a :class:`WorkerBudget`: a count of the worker
processes all their pools together may run (each pool's starting workers are always granted;
growth takes from what is left). A cluster host makes one engine per frame size and gives them
one budget, the cores it reserved from Ray, so that the engines together run no more workers
than the node gave it (but for a moment: a retired worker is given back as it is told to stop,
before it exits). A pool that wants a worker the budget cannot give marks the budget
contended; another pool that has had no task waiting for ``CONTENDED_IDLE_S`` then retires one
worker beyond its minimum, busy or not (a retiring worker finishes what it holds), rather than
waiting for one to sit idle for ``idle_timeout``: a pool that cuts frames into bands keeps all
its workers a little busy, and would otherwise never give one back. When a pool's start takes
the budget past its total (the others had grown into all of it), one pool above its minimum
retires its newest worker at once, however busy it is: an overloaded pool always has work
waiting, and would otherwise keep the node over its cores for as long as the load lasts.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Final

from framering.errors import InvalidTypeError, InvalidValueError
from framering.validation import positive_int, positive_seconds
from framering.workers import MAX_WORKERS, WorkerHandle

# Work that waited this long for a worker makes the pool grow (if it may).
GROW_WAIT_S: Final = 0.1
# How often the manager thread weighs a resize, and reads the workers' memory.
ADAPT_EVERY_S: Final = 0.02
MEMORY_CHECK_EVERY_S: Final = 1.0
DEFAULT_IDLE_TIMEOUT_S: Final = 30.0
# While another pool of the same budget waits for a worker, a pool that has had nothing
# waiting this long gives one back.
CONTENDED_IDLE_S: Final = 1.0


@dataclass(frozen=True)
class PoolLimits:
    """How big the pool starts, and how small and big it may get."""

    start: int
    minimum: int
    maximum: int
    idle_timeout: float
    max_worker_rss: int | None

    @classmethod
    def from_arguments(
        cls,
        workers: int | None,
        min_workers: int | None,
        max_workers: int | None,
        idle_timeout: float,
        max_worker_rss: int | None,
        physical_cores: int,
    ) -> PoolLimits:
        """``Engine``'s arguments, checked: ``workers`` (default one per physical core) is
        where the pool starts; each bound defaults to it."""
        base = physical_cores if workers is None else positive_int(workers, "workers", MAX_WORKERS)
        if max_workers is not None:
            max_workers = positive_int(max_workers, "max_workers", MAX_WORKERS)
        if min_workers is not None:
            minimum = positive_int(min_workers, "min_workers", MAX_WORKERS)
        else:
            minimum = base if max_workers is None else min(base, max_workers)
        maximum = max(base, minimum) if max_workers is None else max_workers
        if minimum > maximum:
            raise InvalidValueError(
                f"min_workers ({minimum}) must not be above max_workers ({maximum})"
            )
        if workers is not None and not minimum <= workers <= maximum:
            raise InvalidValueError(
                f"workers ({workers}) must lie between min_workers ({minimum}) and max_workers "
                f"({maximum})"
            )
        if max_worker_rss is not None:
            if not isinstance(max_worker_rss, int) or isinstance(max_worker_rss, bool):
                raise InvalidTypeError("max_worker_rss must be an int (bytes) or None")
            if max_worker_rss <= 0:
                raise InvalidValueError(f"max_worker_rss must be positive, not {max_worker_rss}")
        return cls(
            start=min(max(base, minimum), maximum),
            minimum=minimum,
            maximum=maximum,
            idle_timeout=positive_seconds(idle_timeout, "idle_timeout"),
            max_worker_rss=max_worker_rss,
        )


def may_grow(limits: PoolLimits, serving: int, starting: int) -> bool:
    """Room for one more worker (``serving``: ready or starting, not retiring)."""
    return starting == 0 and serving < limits.maximum


def worker_to_retire(
    limits: PoolLimits,
    ready: list[WorkerHandle],
    serving: int,
    waiting: int,
    now: float,
    last_grow: float,
    contended: bool = False,
    queued_at: float = -math.inf,
) -> WorkerHandle | None:
    """The worker to retire now, if any (``now``, ``last_grow`` and ``queued_at``, when tasks
    last waited: monotonic). Normally an idle one; ``contended`` (another pool of the same
    budget waits for a worker): the newest, busy or not, once nothing has waited here for
    ``CONTENDED_IDLE_S``, whenever the pool last grew."""
    if serving <= limits.minimum or waiting or not ready:
        return None
    if contended:
        return ready[-1] if now - queued_at >= CONTENDED_IDLE_S else None
    if now - last_grow < limits.idle_timeout:
        return None
    idle = [w for w in ready if not w.inflight and now - w.head_since >= limits.idle_timeout]
    return idle[-1] if idle else None  # the newest: tasks go to the first workers first


def worker_over_budget(
    limits: PoolLimits, ready: list[WorkerHandle], serving: int, starting: int
) -> WorkerHandle | None:
    """The worker to retire if the pool's budget is over its total: the newest ready one, when
    the pool serves more than its minimum and none is starting (retiring the only ready worker
    while another starts would leave the pool with none)."""
    if serving <= limits.minimum or starting or not ready:
        return None
    return ready[-1]


def over_memory(limits: PoolLimits, private_bytes: int | None) -> bool:
    return (
        limits.max_worker_rss is not None
        and private_bytes is not None
        and private_bytes > limits.max_worker_rss
    )


class WorkerBudget:
    """Worker processes that several engines' pools may run together (see the module
    docstring). Thread-safe: each pool's manager thread takes and gives back its own."""

    def __init__(self, workers: int) -> None:
        self.total: Final = positive_int(workers, "workers", MAX_WORKERS)
        self._lock = threading.Lock()
        self._taken = 0
        self._wanted = 0  # pools whose last request was refused

    def __repr__(self) -> str:
        return f"WorkerBudget({self._taken} of {self.total} taken)"

    @property
    def taken(self) -> int:
        return self._taken

    def take_at_start(self, workers: int) -> None:
        """The workers a pool starts with, always granted: they may take the budget past its
        total (more engines than the budget has workers each still run theirs), and growth
        then waits."""
        with self._lock:
            self._taken += workers

    def try_take(self) -> bool:
        """One more worker, if the budget has room."""
        with self._lock:
            if self._taken < self.total:
                self._taken += 1
                return True
            return False

    def start_wanting(self) -> None:
        """A pool was refused a worker and still wants one (counted once per pool)."""
        with self._lock:
            self._wanted += 1

    def stop_wanting(self) -> None:
        """A pool counted as wanting got its worker, or no longer needs it."""
        with self._lock:
            self._wanted -= 1

    def give_back(self, workers: int) -> None:
        with self._lock:
            self._taken -= workers

    def give_back_excess(self) -> bool:
        """One worker less if more are taken than the budget holds (a pool started while the
        others had taken it all): True for the one caller that is to retire that worker, so
        that two pools never both give back the same excess."""
        with self._lock:
            if self._taken > self.total:
                self._taken -= 1
                return True
            return False

    @property
    def contended(self) -> bool:
        """A pool waits for a worker the budget has not got: another should give one back
        (once one is given back, the budget is not contended until it is taken)."""
        return self._wanted > 0 and self._taken >= self.total


class BudgetShare:
    """One pool's part of a :class:`WorkerBudget` (or of none: then every request is granted):
    the workers it counted there, and whether its last request was refused. Used under the
    pool's lock, by its manager thread and its ``stop``."""

    def __init__(self, budget: WorkerBudget | None) -> None:
        self._budget = budget
        self._held = 0  # workers counted in the budget: serving, not retiring
        self._wanting = False  # the last growth the budget refused is still wanted

    def take_at_start(self, workers: int) -> None:
        if self._budget is not None:
            self._budget.take_at_start(workers)
            self._held += workers

    def try_grow(self) -> bool:
        """One more worker (always, without a budget); a refusal counts the pool as wanting."""
        if self._budget is None:
            return True
        if not self._budget.try_take():
            if not self._wanting:
                self._budget.start_wanting()
                self._wanting = True
            return False
        self._held += 1
        self.stop_wanting()
        return True

    def stop_wanting(self) -> None:
        if self._budget is not None and self._wanting:
            self._budget.stop_wanting()
            self._wanting = False

    def give_back(self, workers: int) -> None:
        if self._budget is not None and workers:
            self._budget.give_back(workers)
            self._held -= workers

    def give_back_excess(self) -> bool:
        """One worker given back if the budget is over its total (``WorkerBudget``'s); the
        pool then retires one."""
        if self._budget is None or not self._budget.give_back_excess():
            return False
        self._held -= 1
        return True

    def leave(self) -> None:
        """Stopping or broken: the pool wants nothing more, and gives back every worker it
        counted (a broken pool takes no task, so its workers serve nobody). Idempotent."""
        self.stop_wanting()
        self.give_back(self._held)

    @property
    def others_want(self) -> bool:
        """Another pool of the budget waits for a worker it has not got."""
        return self._budget is not None and self._budget.contended and not self._wanting
