"""The host: one per node, a Ray actor that owns that node's engines and runs its streams.

::

    driver (Cluster)                     node                    (one per Ray node)
    ----------------                     -------------------------------------------
    open_stream / move / stop  --ray-->  NodeHost actor   (num_cpus = its workers)
    a report each period       <--ray--    Engine per frame size and format
                                             worker processes (spawn; own process groups)
                                             shared-memory ring and sources
                                           HostedStream thread per stream:
                                             spec.scene -> ring -> spec.deliver

Everything per frame happens inside the node. The actor's methods are control messages: a few
a second per node, whatever the number of streams. It is a plain class here; the cluster makes
it a Ray actor (``ray.remote``), so it is tested and read without Ray in mind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
import time
from typing import Final

from framering.clock import Policy
from framering.cluster.figures import HostReport, StreamReport
from framering.cluster.hosted import HostedStream
from framering.elastic import WorkerBudget
from framering.engine import Engine
from framering.errors import InvalidValueError, SlotReservationError
from framering.shm import reclaim_orphans

log = logging.getLogger("framering.cluster")

# Slots of each engine's ring: a stream reserves ``slots`` of them (3 by default: one shown,
# one rendering, one ahead), so a ring of 24 carries 8 streams of its size on one node.
# A 1080p ring of 24 RGBA slots is 199 MB of /dev/shm.
DEFAULT_RING_SLOTS: Final = 24
# An engine whose last stream left this long ago is closed (its ring and workers freed);
# a stream of that size coming back sooner finds it ready (starting one takes 1-2 s).
ENGINE_IDLE_S: Final = 30.0


class NodeHost:
    """The engines and streams of one node (the Ray actor's body).

    Its methods run on several of the actor's threads at once: a stream's ``setup`` (or a new
    engine starting) takes no lock that ``report`` or ``stop`` need.
    """

    def __init__(self, node_id: str, cpus: int, ring_slots: int = DEFAULT_RING_SLOTS) -> None:
        self.node_id = node_id
        self.cpus = cpus
        self.ring_slots = ring_slots
        self._engines: dict[tuple[int, int, str], Engine] = {}
        self._idle_since: dict[tuple[int, int, str], float] = {}
        self._streams: dict[str, HostedStream] = {}
        self._starting: set[str] = set()
        self._cancelled: set[str] = set()  # stopped while still starting
        self._lingering: list[HostedStream] = []  # asked to stop, still in the user's code
        self._lock = threading.Lock()  # the dictionaries above; never held for long
        self._engine_lock = threading.Lock()  # making an engine (its workers start)
        self._closed = False
        # the cores the host reserved from Ray: its engines' pools together run no more
        self._budget = WorkerBudget(cpus)
        # segments of hosts that died here before us (the orphan sweep); engines sweep too
        reclaim_orphans()

    @property
    def worker_budget(self) -> WorkerBudget:
        """The workers this node's engines may run together: the cores the host reserved."""
        return self._budget

    def ping(self) -> tuple[str, int]:
        """(node id, pid): the host is up."""
        return self.node_id, os.getpid()

    def _engine(self, width: int, height: int, output: str) -> Engine:
        key = (width, height, output)
        with self._engine_lock:
            if self._closed:
                raise InvalidValueError(f"the host on node {self.node_id} is closing")
            engine = self._engines.get(key)
            if engine is None or engine.closed:
                # elastic: the node's CPUs are shared by its engines (one per frame size):
                # each starts with one worker and grows while its streams need it, within
                # the budget of the cores the host reserved (an engine with nothing waiting
                # for a second gives a worker back when another engine wants one)
                engine = Engine(
                    width,
                    height,
                    slots=self.ring_slots,
                    workers=1,
                    min_workers=1,
                    max_workers=self.cpus,
                    output=output,
                    worker_budget=self._budget,
                )
                with self._lock:
                    self._engines[key] = engine
            with self._lock:
                self._idle_since.pop(key, None)
            return engine

    def start(
        self,
        name: str,
        spec: bytes,
        *,
        placement: int,
        width: int,
        height: int,
        output: str,
        fps: float,
        weight: float,
        slots: int,
        policy: Policy,
        epoch: float | None,
        last_index: int,
    ) -> StreamReport:
        """Set the stream up here and start it with the frame due now by ``epoch`` (None: a
        new stream, whose frame 0 is now), after ``last_index``."""
        with self._lock:
            if self._closed:
                raise InvalidValueError(f"the host on node {self.node_id} is closing")
            if name in self._streams or name in self._starting:
                raise InvalidValueError(f"stream {name!r} already runs on node {self.node_id}")
            self._starting.add(name)
            self._cancelled.discard(name)
        hosted = None
        try:
            engine = self._engine(width, height, output)
            hosted = HostedStream(
                name,
                pickle.loads(spec),
                engine,
                placement=placement,
                fps=fps,
                weight=weight,
                slots=slots,
                policy=policy,
                epoch=epoch,
                last_index=last_index,
            )
        except SlotReservationError as error:
            raise SlotReservationError(
                f"node {self.node_id} has no room for stream {name!r}: {error}"
            ) from error
        finally:
            with self._lock:
                self._starting.discard(name)
                cancelled = name in self._cancelled or self._closed
                self._cancelled.discard(name)
                if hosted is not None and not cancelled:
                    self._streams[name] = hosted
        if cancelled:  # the driver gave up on this start meanwhile: nothing may run unknown
            hosted.stop()
            raise InvalidValueError(f"stream {name!r} was stopped while it was being set up")
        report = hosted.report()
        log.info("stream %r started on node %s at frame %d", name, self.node_id, report.first_index)
        return report

    def stop(self, name: str) -> StreamReport | None:
        """Stop a stream and forget it; its final figures (None if it is not here; one still
        being set up is stopped as soon as its setup returns)."""
        with self._lock:
            hosted = self._streams.pop(name, None)
            if hosted is None and name in self._starting:
                self._cancelled.add(name)
        if hosted is None:
            return None
        final = hosted.stop()
        if hosted.running:
            with self._lock:
                self._lingering.append(hosted)
        return final

    def _close_idle_engines(self, now: float) -> None:
        """An engine no stream has used for ``ENGINE_IDLE_S`` is closed: its ring and workers
        go back to the node."""
        idle: list[Engine] = []
        with self._lock:
            self._lingering = [h for h in self._lingering if h.running]
            used = {id(h.engine) for h in [*self._streams.values(), *self._lingering]}
            for key, engine in list(self._engines.items()):
                if id(engine) in used or self._starting:
                    self._idle_since.pop(key, None)
                    continue
                since = self._idle_since.setdefault(key, now)
                if now - since >= ENGINE_IDLE_S:
                    idle.append(self._engines.pop(key))
                    self._idle_since.pop(key, None)
        for engine in idle:
            log.info("closing the idle %dx%d engine on node %s", *engine.frame_size, self.node_id)
            engine.close()

    def report(self) -> HostReport:
        self._close_idle_engines(time.monotonic())
        with self._lock:
            streams = list(self._streams.values())
            engines = list(self._engines.values())
        reports = tuple(hosted.report() for hosted in streams)
        pixels = sum(r.delivered * h.frame_pixels for r, h in zip(reports, streams, strict=True))
        return HostReport(
            node_id=self.node_id,
            pid=os.getpid(),
            cpus=self.cpus,
            workers=sum(engine.workers for engine in engines if not engine.closed),
            worker_pids=tuple(self._worker_pids(engines)),
            frame_pixels=pixels,
            worker_seconds=sum(r.worker_seconds for r in reports),
            streams=reports,
            wall=time.time(),
        )

    @staticmethod
    def _worker_pids(engines: list[Engine]) -> list[int]:
        pids: list[int] = []
        for engine in engines:
            if not engine.closed:
                with contextlib.suppress(Exception):
                    pids.extend(engine.worker_pids())
        return pids

    def reclaim(self) -> list[str]:
        """Unlink the segments of framering processes that died on this machine (a host lost
        with its node, whose engine could not close)."""
        return reclaim_orphans()

    def close(self) -> list[int]:
        """Stop every stream, close the engines; the pids their workers had. Idempotent."""
        with self._engine_lock, self._lock:  # no engine is being made as it closes
            self._closed = True
            streams = list(self._streams.values())
            self._streams.clear()
            engines = list(self._engines.values())
            self._engines.clear()
        for hosted in streams:
            hosted.stop()
        pids = self._worker_pids(engines)
        for engine in engines:
            engine.close()
        for pid in pids:  # each worker leads its own process group: anything it left dies too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        return pids
