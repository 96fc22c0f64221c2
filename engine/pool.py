"""The worker pool: processes, pipes, one manager thread, dispatch and recovery.

Who owns what::

    caller threads               manager thread (one)                worker processes (spawn)
    --------------               --------------------                ------------------------
    submit(task) --+                                                 +-> worker 0: recv RENDER,
                   | a READY worker with room (scheduler)?           |   composite into the
                   +-- yes: send RENDER ---------------------------->+   slot, send DONE
                   +-- no: append to `pending`                       |
                                                                     |
                     wait() on every result pipe, every worker's  <--+   DONE / FAILED / ERROR
                     sentinel and a wake-up pipe, at once;
                     the timeout is the nearest task deadline
                       DONE/FAILED -> the task's listener, then dispatch `pending`
                       sentinel    -> worker died: retry its tasks, start a replacement
                       deadline    -> SIGKILL the hung worker (then as above)

The manager thread also resizes an elastic pool (``framering.elastic``): it starts a worker
under pressure, retires an idle one, and recycles one whose memory grew too big.

Shared state (`pending`, each worker's `inflight`) is guarded by one lock that is never held
while writing to a pipe, so a full pipe can never stall the manager thread (it is held while a
replacement process starts, so that no upload can miss the new worker). At most
``scheduler.MAX_PACKED_PER_WORKER`` tasks sit in a worker's pipe (``MAX_QUEUED_PER_WORKER``
unless short frames are packed onto it); the rest wait in `pending` (the scheduler's queue).
When a worker dies, only the first of its tasks written to its pipe can have been started
(``WorkerHandle.send`` notes the order): the others go back to the queue with their
attempt unspent.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Final

from framering import elastic, protocol
from framering.elastic import BudgetShare, PoolLimits, WorkerBudget
from framering.errors import EngineBrokenError, EngineClosedError, InvalidTypeError
from framering.ring import RingHeader
from framering.scheduler import FairScheduler, Flow
from framering.tasks import Task
from framering.validation import positive_int, positive_seconds
from framering.workers import (
    PoolCounters,
    PoolSnapshot,
    WorkerHandle,
    WorkerSnapshot,
    WorkerState,
    WorkerWatch,
    describe_exit,
    last_line,
    next_deadline_in,
    physical_cores,
    start_failure_reason,
)

log = logging.getLogger("framering")

# Times a task is dispatched before it is declared failed (first try plus one retry).
DEFAULT_MAX_ATTEMPTS: Final = 2
# Spawning a worker imports numpy, numba and OpenCV and loads the cached kernels: about a
# second on a quiet machine, many on a loaded CI runner.
DEFAULT_START_TIMEOUT_S: Final = 120.0
# Consecutive workers that may die before saying hello before the engine calls itself broken.
MAX_START_FAILURES: Final = 3
# How long the manager sleeps when nothing has a deadline (it wakes on any event anyway).
IDLE_WAIT_S: Final = 1.0
# Grace period for workers to exit after STOP before they are killed.
STOP_GRACE_S: Final = 2.0


class WorkerPool:
    """Persistent worker processes fed with tasks; see the module docstring."""

    def __init__(
        self,
        ring_name: str,
        ring_header: RingHeader,
        limits: PoolLimits | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        budget: WorkerBudget | None = None,
        *,
        on_broken: Callable[[str], None] | None = None,
    ) -> None:
        """Start ``limits.start`` processes (default: one per physical core, fixed) and wait
        until every one said hello; raises ``EngineBrokenError`` if they cannot start.
        ``budget``: shared with other pools, it bounds the workers they grow to together.
        ``on_broken(reason)`` is called, with the pool's lock held, from whichever thread
        finds the pool cannot go on: told rather than asked, so that the check that an engine
        is open, made several times a frame, calls nothing."""
        if limits is None:
            limits = PoolLimits.from_arguments(
                None, None, None, elastic.DEFAULT_IDLE_TIMEOUT_S, None, physical_cores()
            )
        self._limits = limits
        self._budget = BudgetShare(budget)
        max_attempts = positive_int(max_attempts, "max_attempts", 100)
        start_timeout = positive_seconds(start_timeout, "start_timeout")
        self._start_timeout = start_timeout
        if initializer is not None and not callable(initializer):
            raise InvalidTypeError("initializer must be callable")
        self._ring_name = ring_name
        self._ring_header = ring_header
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._workers: list[WorkerHandle] = []
        self._scheduler = FairScheduler(max_attempts)
        self._attach_messages: dict[int, bytes] = {}  # by source id: replayed to replacements
        self._start_failures = 0
        self._counters = PoolCounters()
        self._next_index = limits.start  # of the next worker the pool grows by
        self._last_grow = -math.inf  # time.monotonic() of the last start for pressure
        self._adapted_at = -math.inf
        self._queued_at = -math.inf  # time.monotonic() when _adapt last saw tasks waiting
        self._memory_read_at = time.monotonic()
        self._closing = False
        self._generation = 0  # bumped whenever a worker is added, dies or stops
        self._broken: str | None = None
        self._on_broken = on_broken
        self._ready = threading.Condition(self._lock)
        self._watch = WorkerWatch(self._context)
        self._reassign = False  # queued tasks may wait with a worker free (``_take_back``)
        self._manager = threading.Thread(target=self._manage, name="framering-manager", daemon=True)
        self._budget.take_at_start(limits.start)
        try:  # whatever interrupts the start (Ctrl-C included), nothing started outlives it
            self._start(limits.start, start_timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, workers: int, start_timeout: float) -> None:
        for index in range(workers):
            worker = self._spawn(index)
            with self._lock:
                self._workers.append(worker)
        self._manager.start()
        with self._ready:
            started = self._ready.wait_for(
                lambda: (
                    self._broken is not None
                    or all(w.state is WorkerState.READY for w in self._workers)
                ),
                start_timeout,
            )
        if self._broken is not None:
            raise EngineBrokenError(self._broken)
        if not started:
            raise EngineBrokenError(f"workers did not start within {start_timeout} s")

    # ----------------------------------------------------------------- processes
    def _spawn(self, index: int) -> WorkerHandle:
        """Start a worker process (the caller registers it, then sends it every ATTACH)."""
        return WorkerHandle.spawn(
            self._context,
            index,
            self._ring_name,
            self._ring_header,
            self._initializer,
            self._initargs,
        )

    def _send(self, worker: WorkerHandle, data: bytes, task: Task | None = None) -> bool:
        """Write one message (``task``'s, if it is a task's); False if the worker's pipe is
        gone (its death is seen elsewhere)."""
        if not worker.send(data, task):
            return False
        with self._lock:
            self._counters.bytes_sent += len(data)
        return True

    def _broadcast(self, data: bytes) -> None:
        """Send ``data`` to every live worker (outside the lock)."""
        with self._lock:
            targets = [w for w in self._workers if w.live]
        for worker in targets:
            self._send(worker, data)

    # ----------------------------------------------------------------- sources
    def attach_source(self, source_id: int, attach: bytes) -> None:
        """Tell every worker, and every replacement to come, to map a source (an ATTACH).

        A replacement is sent every ATTACH before any task can reach it: tasks only go to
        READY workers, READY follows the worker's hello, and hellos are handled on the
        manager thread, which is the thread that sends a replacement its ATTACHes.
        """
        with self._lock:
            self._attach_messages[source_id] = attach
        self._broadcast(attach)

    def detach_source(self, source_id: int) -> None:
        with self._lock:
            self._attach_messages.pop(source_id, None)
        self._broadcast(protocol.encode_detach(source_id))

    # ----------------------------------------------------------------- tasks
    def submit(self, tasks: Sequence[Task]) -> None:
        """Queue tasks (a frame's bands go together, to be taken by as many workers at once);
        they are sent at once where workers have room. Refused once stopping."""
        with self._lock:
            if self._broken is not None:
                raise EngineBrokenError(self._broken)
            if self._closing:
                raise EngineClosedError("the engine is closing; no task is taken")
            sends: list[tuple[WorkerHandle, Task]] = []
            try:
                for task in tasks:
                    self._scheduler.add(task)
                self._scheduler.assign(self._workers, sends)
            except BaseException:
                self._take_back(sends)  # interrupted (Ctrl-C): nothing of this call was sent
                raise
        self._send_all(sends)

    def _take_back(self, sends: list[tuple[WorkerHandle, Task]]) -> None:
        """Lock held. Undo an interrupted ``assign`` (``FairScheduler.take_back``), and wake the
        manager thread to hand the tasks out again: those of other frames may have no other
        event coming to do it."""
        self._scheduler.take_back(sends)
        self._reassign = True
        self._watch.wake()

    def paced_estimate(self, flow: Flow | None, pixels: int) -> float | None:
        """While paced frames are coming: the worker time a task of ``pixels`` of ``flow``
        is expected to take (to slice it, ``framering.bands``); None otherwise."""
        with self._lock:
            if not self._scheduler.paced_live():
                return None
            return (flow or self._scheduler.default_flow).estimate_ns(pixels)

    def load(self) -> tuple[int, int, int]:
        """Ready workers holding no task, ready workers, and tasks waiting (for bands)."""
        with self._lock:
            ready = [w for w in self._workers if w.state is WorkerState.READY]
            idle = sum(1 for w in ready if not w.inflight)
            return idle, len(ready), len(self._scheduler)

    def withdraw(self, task: Task) -> bool:
        """Take back a task whose ``submit`` was interrupted: True if the pool does not hold
        it (never queued, or taken off the queue now), so the caller ends it; False if a
        worker may have it, in which case its reply (or its deadline) ends it as usual."""
        with self._lock:
            if self._scheduler.remove(task):
                return True
            return not any(task.id in w.inflight for w in self._workers)

    def _send_all(self, sends: list[tuple[WorkerHandle, Task]]) -> None:
        try:
            for worker, task in sends:
                self._send(worker, task.encode(), task)
        except BaseException:
            # interrupted (Ctrl-C), anywhere in the loop: a task noted as written may have
            # reached its worker, which then answers or misses its deadline; every other one
            # never left (left in flight, it would hold its worker's place until the deadline
            # killed a healthy worker), so back they go
            self._unassign([(w, task) for w, task in sends if not w.wrote(task)])
            raise

    def _unassign(self, sends: list[tuple[WorkerHandle, Task]]) -> None:
        with self._lock:
            for worker, task in reversed(sends):
                worker.written.pop(task.id, None)
                if worker.inflight.pop(task.id, None) is task:
                    task.attempts -= 1
                    self._scheduler.put_back(task)

    def _break(self, reason: str) -> None:
        """The pool cannot go on (called with the lock held): say why, to the owner too, and
        give the budget back."""
        self._broken = reason
        if self._on_broken is not None:
            self._on_broken(reason)
        self._budget.leave()

    # ----------------------------------------------------------------- manager thread
    def _manage(self) -> None:
        try:
            self._manage_loop()
        except BaseException:  # a bug here must not leave every waiter hanging for ever
            reason = f"the manager thread crashed:\n{traceback.format_exc()}"
            with self._ready:
                self._break(reason)
                tasks = self._scheduler.take_all()
                for worker in self._workers:
                    tasks += worker.inflight.values()
                    worker.inflight.clear()
                self._ready.notify_all()
            for task in tasks:
                task.listener.task_failed(task, reason)
            raise

    def _manage_loop(self) -> None:
        generation = -1
        while True:
            # one lock a turn: who is alive, who is overdue, and how long to wait
            with self._lock:
                live = [w for w in self._workers if w.live]
                if self._closing and not live:
                    return
                now = time.monotonic()
                overdue = [worker for worker in live if worker.overdue(now, self._start_timeout)]
                timeout = next_deadline_in(live, IDLE_WAIT_S)
                if len(self._scheduler) and self._limits.maximum > self._limits.minimum:
                    timeout = min(timeout, elastic.GROW_WAIT_S / 2)  # to see pressure build
            for worker in overdue:
                log.warning("%s (pid %s)", worker.kill_reason, worker.pid)
                worker.kill()  # its death reaches the watch next turn
            if generation != self._generation:
                generation = self._generation
                self._watch.watch(live)
            results, deaths = self._watch.wait(timeout)
            if self._reassign:
                with self._lock:
                    self._reassign = False
                    sends = self._scheduler.assign(self._workers)
                self._send_all(sends)
            for worker in results:
                self._drain(worker)
            for worker in deaths:
                self._drain(worker, all_pending=True)  # its last results count
                self._on_death(worker)
            self._adapt()

    def _drain(self, worker: WorkerHandle, *, all_pending: bool = False) -> None:
        """Handle what the worker's pipe holds (the watch said it is readable: usually one
        reply, several when they came together), or everything left before a death."""
        for data in worker.receive(all_pending):
            try:
                message = protocol.decode(data)
            except protocol.ProtocolError:
                with self._lock:
                    self._counters.bytes_received += len(data)
                    self._counters.protocol_errors += 1
                continue
            self._handle(worker, message, len(data))

    def _handle(self, worker: WorkerHandle, message: protocol.Message, size: int) -> None:
        if isinstance(message, protocol.Done | protocol.Failed):
            self._task_ended(worker, message, size)
            return
        with self._lock:
            self._counters.bytes_received += size
        if isinstance(message, protocol.Hello):
            with self._ready:
                worker.pid = message.pid
                worker.state = WorkerState.READY
                self._start_failures = 0
                sends = self._scheduler.assign(self._workers)
                self._ready.notify_all()
            log.info("worker %d started (pid %d)", worker.index, message.pid)
            self._send_all(sends)
        elif isinstance(message, protocol.Error):
            with self._lock:
                self._counters.protocol_errors += 1
                worker.last_error = message.text
            log.warning("worker %d reports: %s", worker.index, message.text.rstrip())

    def _task_ended(
        self, worker: WorkerHandle, message: protocol.Done | protocol.Failed, size: int
    ) -> None:
        """A DONE or FAILED: the hot path, one lock for the records and the next dispatch."""
        failed = None
        with self._lock:
            self._counters.bytes_received += size
            task = worker.inflight.get(message.task)
            if task is None or task.attempts != message.attempt:
                self._counters.stale_replies += 1  # an attempt this worker no longer holds
                return
            del worker.inflight[message.task]
            worker.written.pop(message.task, None)
            worker.head_since = time.monotonic()
            if isinstance(message, protocol.Done):
                self._scheduler.charge(task, message.worker_ns)
                worker.tasks_done += 1
            else:
                task.last_cause = message.text
                if not self._scheduler.retry(task, self._closing):
                    failed = task
            sends = self._scheduler.assign(self._workers)
        if isinstance(message, protocol.Done):
            task.listener.task_done(task, message.worker_ns)
        elif failed is None:
            log.warning(
                "task %d failed in worker %d (attempt %d), retrying: %s",
                task.id,
                worker.index,
                task.attempts,
                last_line(message.text),
            )
        if failed is not None:
            failed.listener.task_failed(failed, failed.last_cause)
        self._send_all(sends)

    def _on_death(self, worker: WorkerHandle) -> None:
        worker.process.join(timeout=1.0)
        cause = (
            worker.kill_reason or f"worker {worker.index} {describe_exit(worker.process.exitcode)}"
        )
        # its own traceback: what faulthandler dumped at a fatal signal, or the last ERROR
        # it sent (an exception that ended its loop, a start-up failure)
        traceback_text = worker.crash_traceback().strip() or (worker.last_error or "").strip()
        failed: list[Task] = []
        replace = became_broken = False
        with self._ready:
            if worker.state in (WorkerState.DEAD, WorkerState.STOPPED):
                return
            died_starting = worker.state is WorkerState.STARTING
            retiring = worker.state is WorkerState.RETIRING
            planned = retiring and worker.stop_sent and not worker.inflight
            worker.state = WorkerState.STOPPED if self._closing or planned else WorkerState.DEAD
            self._generation += 1
            orphans = list(worker.inflight.values())
            worker.inflight.clear()
            # A worker takes its tasks one at a time, in the order written to its pipe: only
            # the first written can have been started. The others go back as if never sent,
            # their attempt not spent, so that a frame that kills every worker it meets cannot
            # take down the frames queued behind it on each. (Closing, nothing is sent again.)
            if self._closing:
                attempted, unstarted = orphans, []
            else:
                started = worker.first_written(orphans)
                attempted = [] if started is None else [started]
                unstarted = [t for t in orphans if t is not started]
            for task in reversed(unstarted):
                task.attempts -= 1
                self._scheduler.put_back(task)
            for task in attempted:  # at the front of the queue
                task.last_cause = cause
                if not task.retryable:
                    task.last_cause = (
                        f"{cause}; the frame was composited over the slot's previous content, "
                        f"which the dead worker may have half overwritten, so it is not retried"
                    )
                if not self._scheduler.retry(task, self._closing):
                    failed.append(task)
            if retiring and not self._closing:
                self._workers.remove(worker)  # retired or recycled: nobody takes its place
            elif not self._closing:
                if died_starting:
                    self._start_failures += 1
                if self._start_failures >= MAX_START_FAILURES:
                    became_broken = self._broken is None
                    self._break(start_failure_reason(self._start_failures, worker))
                    failed += self._scheduler.take_all()
                else:
                    replace = True
            sends = self._scheduler.assign(self._workers)  # retries go to a live worker now
            self._ready.notify_all()
        if not self._closing:  # else stop() releases it, after its own join
            worker.release()
        self._send_all(sends)
        told = f"; its traceback:\n{traceback_text}" if traceback_text else ""
        if became_broken:
            log.error("engine broken: %s%s", self._broken, told)
        elif replace:
            retried = len(orphans) - len(unstarted) - len(failed)
            behind = f", {len(unstarted)} not started sent again" if unstarted else ""
            log.warning(
                "%s (pid %s); %d task(s) retried, %d failed%s; starting a replacement%s",
                cause,
                worker.pid,
                retried,
                len(failed),
                behind,
                told,
            )
        elif planned or self._closing:
            log.info("worker %d exited (pid %s)", worker.index, worker.pid)
        else:  # died while retiring: its tasks are retried, its successor (if any) is started
            log.warning(
                "%s (pid %s) while retiring; %d task(s) retried%s",
                cause,
                worker.pid,
                len(orphans) - len(failed),  # (the unstarted ones among them)
                told,
            )
        for task in failed:
            task.listener.task_failed(task, self._broken or task.last_cause)
        if replace:
            self._replace(worker)

    def _replace(self, worker: WorkerHandle) -> None:
        """Start a worker in the place of a dead one (see :meth:`_lose` if it cannot start)."""
        with self._lock:  # registered before the lock drops: no upload can miss it
            if self._closing:  # stop() took its list of workers: it would miss this one
                return
            try:
                replacement, attaches = self._add_worker(worker.index, in_place_of=worker)
            except OSError as error:  # out of processes or file descriptors
                failed = self._lose(worker, error)
            else:
                self._counters.restarts += 1
                failed = None
        if failed is None:
            for attach in attaches:
                self._send(replacement, attach)
            return
        for task in failed:
            task.listener.task_failed(task, self._broken or "")

    def _lose(self, worker: WorkerHandle, error: OSError) -> list[Task]:
        """Lock held. A dead worker whose replacement could not start: the pool goes on without
        it, or breaks when no worker is left; returns the queued tasks that then fail with the
        reason (instead of waiting for ever)."""
        self._workers.remove(worker)
        self._budget.give_back(1)
        self._generation += 1
        reason = f"a replacement for worker {worker.index} could not start: {error}"
        if any(w.live for w in self._workers) or self._broken is not None:
            log.error("%s; the pool goes on with one worker less", reason)
            return []
        self._break(f"no worker left: {reason}")
        log.error("engine broken: %s", self._broken)
        return self._scheduler.take_all()

    # ----------------------------------------------------------------- elastic pool
    def _adapt(self) -> None:
        """Grow, shrink or recycle (``framering.elastic``); STOP retiring workers that are
        done. At most every ``ADAPT_EVERY_S``, on the manager thread."""
        now = time.monotonic()
        if now - self._adapted_at < elastic.ADAPT_EVERY_S:
            return
        self._adapted_at = now
        if len(self._scheduler):
            self._queued_at = now
        memory_due = now - self._memory_read_at >= elastic.MEMORY_CHECK_EVERY_S
        if self._limits.max_worker_rss is not None and memory_due:
            self._memory_read_at = now
            self._recycle_oversized()
        limits = self._limits
        started: WorkerHandle | None = None
        spawn_failed: OSError | None = None
        attaches: list[bytes] = []
        stops: list[WorkerHandle] = []
        reason = None
        with self._lock:
            if self._closing or self._broken is not None:
                return
            ready = [w for w in self._workers if w.state is WorkerState.READY]
            starting = sum(1 for w in self._workers if w.state is WorkerState.STARTING)
            serving = len(ready) + starting
            if elastic.may_grow(limits, serving, starting):
                reason = self._scheduler.pressure(time.perf_counter(), elastic.GROW_WAIT_S)
                if reason is not None and self._budget.try_grow():
                    try:
                        started, attaches = self._add_worker(self._next_index)
                    except OSError as error:  # out of processes or file descriptors
                        self._budget.give_back(1)
                        self._last_grow = now  # not again at once: after the hysteresis
                        spawn_failed = error
                    else:
                        self._next_index += 1
                        self._last_grow = now
                        self._counters.scale_ups += 1
                elif reason is None:
                    self._budget.stop_wanting()
            if started is None:
                victim, why = self._shrink_by(ready, serving, starting, now)
                if victim is not None:
                    self._retire(victim, why)
                    self._counters.scale_downs += 1
                    serving -= 1
            for worker in self._workers:
                drained = worker.state is WorkerState.RETIRING and not worker.inflight
                if drained and not worker.stop_sent:
                    worker.stop_sent = True
                    stops.append(worker)
        for worker in stops:
            self._send(worker, protocol.encode_stop())
        if spawn_failed is not None:
            log.warning("pool could not grow: starting a worker failed: %s", spawn_failed)
        if started is not None:
            for attach in attaches:
                self._send(started, attach)
            log.info(
                "pool growing to %d workers (worker %d starting): %s",
                serving + 1,
                started.index,
                reason,
            )
        for worker in stops:
            if worker.retire_reason.startswith("retired"):
                log.info(
                    "worker %d (pid %s) %s; pool shrinking to %d",
                    worker.index,
                    worker.pid,
                    worker.retire_reason,
                    serving,
                )

    def _shrink_by(
        self, ready: list[WorkerHandle], serving: int, starting: int, now: float
    ) -> tuple[WorkerHandle | None, str]:
        """Lock held. The worker to retire now and why (``framering.elastic``), its place in
        the budget given back; (None, "") to keep every worker."""
        victim = elastic.worker_over_budget(self._limits, ready, serving, starting)
        if victim is not None and self._budget.give_back_excess():
            return victim, "retired: its worker budget was over its total (an engine started)"
        contended = self._budget.others_want
        victim = elastic.worker_to_retire(
            self._limits,
            ready,
            serving,
            len(self._scheduler),
            now,
            self._last_grow,
            contended=contended,
            queued_at=self._queued_at,
        )
        if victim is None:
            return None, ""
        self._budget.give_back(1)
        if contended:
            return victim, "retired for another engine of its worker budget (nothing waited)"
        return victim, f"retired after {now - victim.head_since:.1f} s idle"

    def _add_worker(
        self, index: int, in_place_of: WorkerHandle | None = None
    ) -> tuple[WorkerHandle, list[bytes]]:
        """Lock held. Start a worker, as one more or in the place of a dead one, registered
        before the lock drops so that no upload can miss it; returns it and the ATTACH
        messages the caller sends it (outside the lock), every source it must map."""
        worker = self._spawn(index)
        if in_place_of is None:
            self._workers.append(worker)
        else:
            self._workers[self._workers.index(in_place_of)] = worker
        self._generation += 1
        return worker, list(self._attach_messages.values())

    def _retire(self, worker: WorkerHandle, reason: str) -> None:
        """Lock held. The worker takes no new task; ``_adapt`` stops it once it holds none."""
        worker.state = WorkerState.RETIRING
        worker.retire_reason = reason

    def _recycle_oversized(self) -> None:
        """Retire each ready worker whose private memory passed ``max_worker_rss`` (reading
        it outside the lock), with a replacement started at once."""
        with self._lock:
            ready = [w for w in self._workers if w.state is WorkerState.READY]
        for worker in ready:
            size = worker.private_memory()
            if not elastic.over_memory(self._limits, size):
                continue
            with self._lock:
                if worker.state is not WorkerState.READY or self._closing:
                    continue
                try:
                    replacement, attaches = self._add_worker(self._next_index)
                except OSError as error:  # it keeps serving; its memory is read again later
                    log.warning(
                        "worker %d not recycled: its replacement failed to start: %s",
                        worker.index,
                        error,
                    )
                    continue
                self._retire(
                    worker,
                    f"recycled: {size / 2**20:.0f} MiB of private memory, above max_worker_rss "
                    f"{self._limits.max_worker_rss / 2**20:.0f} MiB",  # type: ignore[operator]
                )
                self._counters.recycled += 1
                self._next_index += 1
            for attach in attaches:
                self._send(replacement, attach)
            log.info(
                "worker %d (pid %s) %s; worker %d starts in its place",
                worker.index,
                worker.pid,
                worker.retire_reason,
                replacement.index,
            )

    # ----------------------------------------------------------------- shutdown
    def stop(self) -> None:
        """Stop every worker (STOP, then SIGKILL after a grace period). Tasks not finished are
        dropped: their jobs end when the engine ends every live job (``Jobs.close``).

        Safe to call again, from the start or after an interrupted call: each step is."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
            self._scheduler.take_all()
            self._budget.leave()
        for worker in workers:
            if worker.live:
                self._send(worker, protocol.encode_stop())
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in workers:
            worker.join_or_kill(deadline)
        self._watch.wake()
        if self._manager.is_alive() and threading.current_thread() is not self._manager:
            self._manager.join(5.0)
        exited = []
        with self._lock:
            for worker in workers:
                worker.inflight.clear()
                if worker.live:
                    exited.append(worker)  # (the manager logged those it saw exit)
                if worker.state is not WorkerState.DEAD:
                    worker.state = WorkerState.STOPPED
            self._generation += 1
        for worker in exited:
            if worker.pid is not None:
                log.info("worker %d exited (pid %d)", worker.index, worker.pid)
        for worker in workers:
            worker.release()
        self._watch.close()

    # ----------------------------------------------------------------- introspection
    def snapshot(self) -> PoolSnapshot:
        """Counters for metrics, taken under the lock."""
        with self._lock:
            return PoolSnapshot(
                workers=tuple(
                    WorkerSnapshot(
                        w.index, w.pid, w.state.value, w.tasks_done, len(w.inflight), w.last_error
                    )
                    for w in self._workers
                ),
                queued=len(self._scheduler),
                inflight=sum(len(w.inflight) for w in self._workers),
                retries=self._scheduler.retries,
                counters=dataclasses.replace(self._counters),
            )

    @property
    def broken(self) -> str | None:
        return self._broken

    def pids(self) -> list[int]:
        with self._lock:
            return [
                w.pid for w in self._workers if w.pid is not None and w.state is WorkerState.READY
            ]
