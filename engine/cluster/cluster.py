"""The driver's side of a cluster: hosts on the nodes, streams placed on them, failover.

::

    Cluster (driver process)                            Ray nodes
    ------------------------                            ---------
    open_stream / move / stop  --- a call each --->     NodeHost actor on node A
    watch thread, every period:                           engines, workers, streams
      report() to every host   --- one per node --->    NodeHost actor on node B
      a dead host (Ray says so): re-place its streams     ...
      new nodes, crashed hosts: start a host on each

The driver never sees a frame: its cost per stream is a share of one report per node per
period, plus a call when a stream opens, moves or stops. Ray places nothing on its own here:
each host is pinned to its node (``NodeAffinitySchedulingStrategy``, not soft, no restarts),
and streams go where ``framering.cluster.placement`` says. A lost node is the one Ray declares
dead (its health checks: about 20 s by default, ``RAY_health_check_*`` lower it); a host that is
only slow to answer keeps its streams, so a stream never runs on two nodes at once.

Control calls (opening, moving, stopping, re-placing) are made one at a time under the
cluster's lock; ``metrics()`` reads a snapshot published after each of them and after each
round of reports, so it never waits for one.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Final

import ray
import ray.cloudpickle
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayError

from framering.clock import POLICIES, Policy
from framering.cluster.figures import (
    ClusterMetrics,
    ClusterStreamMetrics,
    HostReport,
    NodeMetrics,
    StreamReport,
    StreamState,
)
from framering.cluster.handle import ClusterStream
from framering.cluster.host import DEFAULT_RING_SLOTS
from framering.cluster.ledger import StreamConfig, StreamRecord
from framering.cluster.placement import NodeLoad, choose_node
from framering.cluster.remote import CallCounter, RemoteHost
from framering.cluster.spec import StreamSpec
from framering.errors import (
    ClusterError,
    EngineClosedError,
    InvalidArgumentError,
    InvalidTypeError,
    InvalidValueError,
    SlotReservationError,
)
from framering.kernels.validate import MAX_SIDE
from framering.lifetime import close_at_exit, forget_at_exit
from framering.shm import reclaim_orphans
from framering.streams import LIVE_LOOP_SLOTS
from framering.validation import check_fps, check_weight, positive_int, positive_seconds

log = logging.getLogger("framering.cluster")

# How often the driver asks each host for its report, and so how old metrics() may be. Each
# host's report is one Ray call whatever its number of streams.
DEFAULT_REPORT_PERIOD_S: Final = 1.0
# How often the driver looks for nodes that joined, and hosts that died on live nodes (one
# call to Ray's control store).
NODE_SCAN_S: Final = 5.0
# Longest the driver waits for a host to start (its engine's Numba cache load included), a
# stream's setup, or the hosts to close.
DEFAULT_START_TIMEOUT_S: Final = 60.0
CONTROL_TIMEOUT_S: Final = 60.0
# Slots each stream reserves of its node's ring: the frame shown, the one rendering, one ahead.
DEFAULT_STREAM_SLOTS: Final = 3


class Cluster:
    """Live streams spread over the nodes of a Ray cluster, each on one node's engine.

    Args:
        address: None starts a local Ray (or uses the one this process already joined);
            otherwise the address of a running cluster, as ``ray.init`` takes it.
        cpus_per_node: worker processes each node's host runs, reserved from Ray as
            ``num_cpus`` (None: all of the node's CPUs). Nodes with fewer CPUs get none.
        ring_slots: slots of each engine's ring on a node: ``slots`` per stream of that size.
        report_period: seconds between two reports of each host: the age of ``metrics()``,
            and how soon a lost node's streams are seen to be lost after Ray says so.
        start_timeout: seconds to wait for hosts to start and for a stream's setup.

    Use it as a context manager, or call :meth:`close`: streams stop, hosts close their
    engines (no segment or worker is left), and a Ray this cluster started shuts down.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_node: int | None = None,
        ring_slots: int = DEFAULT_RING_SLOTS,
        report_period: float = DEFAULT_REPORT_PERIOD_S,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
    ) -> None:
        if cpus_per_node is not None:
            cpus_per_node = positive_int(cpus_per_node, "cpus_per_node", 1 << 16)
        self._cpus_per_node = cpus_per_node
        self._ring_slots = positive_int(ring_slots, "ring_slots", 1 << 10)
        self._period = positive_seconds(report_period, "report_period")
        self._start_timeout = positive_seconds(start_timeout, "start_timeout")
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False, configure_logging=False)
        elif address is not None:
            log.warning("Ray is running in this process already: address %r is not used", address)
        self._lock = threading.RLock()
        self._hosts: dict[str, RemoteHost] = {}
        self._streams: dict[str, StreamRecord] = {}
        self._counter = CallCounter()
        self._placements = itertools.count()
        self._failovers = 0
        self._closed = False
        self._stopping = threading.Event()
        self._snapshot = ClusterMetrics({}, {}, 0, 0)
        try:
            with self._lock:
                self._scan_nodes()
                self._await_hosts(self._start_timeout)
            if not any(host.usable for host in self._hosts.values()):
                raise ClusterError(
                    "no Ray node could host streams: none has "
                    f"{cpus_per_node or 1} CPU(s) free for framering's workers"
                )
        except BaseException:
            for host in self._hosts.values():
                host.kill()
            self._shutdown_ray()
            raise
        self._publish()
        self._watcher = threading.Thread(
            target=self._watch, name="framering-cluster-watch", daemon=True
        )
        self._watcher.start()
        close_at_exit(self)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        snapshot = self._snapshot
        live = sum(1 for node in snapshot.nodes.values() if node.alive)
        return f"Cluster({live} nodes, {len(snapshot.streams)} streams)"

    @property
    def node_ids(self) -> list[str]:
        """Nodes whose host is up and takes streams."""
        with self._lock:
            return [h.node_id for h in self._hosts.values() if h.usable]

    # ------------------------------------------------------------------ hosts
    def _scan_nodes(self) -> None:
        """Start a host on each live node that has none (or whose host died while the node
        lives on); a node Ray says is dead is lost. The lock held."""
        for node in ray.nodes():
            node_id = node["NodeID"]
            host = self._hosts.get(node_id)
            if not node["Alive"]:
                if host is not None and host.alive:
                    self._lose(host, "Ray reports the node dead")
                continue
            if host is not None and host.alive:
                continue
            total = int(node.get("Resources", {}).get("CPU", 0))
            cpus = total if self._cpus_per_node is None else self._cpus_per_node
            if cpus < 1 or total < cpus:
                continue
            if host is not None:
                host.kill()  # dead already; a new host takes the node
                log.info("starting a new framering host on node %s", node_id)
            self._hosts[node_id] = RemoteHost(node_id, cpus, self._ring_slots, self._counter)

    def _await_hosts(self, timeout: float) -> None:
        pending = {h.pending: h for h in self._hosts.values() if not h.ready and h.pending}
        if not pending:
            return
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=timeout)
        for ref in ready:
            self._answered(pending[ref], ref)
        for ref, host in pending.items():
            if ref not in ready:
                log.warning("the host on node %s did not start within %g s", host.node_id, timeout)

    def _answered(self, host: RemoteHost, ref: Any) -> None:
        """A host answered a ping or a report (or Ray says it never will). The lock held."""
        asked_at = host.asked_at
        host.pending = None
        try:
            answer = ray.get(ref)
        except ActorUnavailableError:
            return  # a transient error: asked again next period
        except RayActorError as error:
            self._lose(host, f"its host died ({type(error).__name__})")
            return
        if isinstance(answer, HostReport):
            self._take_report(host, answer, asked_at)
        elif not host.ready:
            host.ready = True
            log.info("framering host up on node %s (%d workers)", host.node_id, host.cpus)

    def _take_report(self, host: RemoteHost, report: HostReport, asked_at: float) -> None:
        host.take(report)
        found = {(s.name, s.placement): s for s in report.streams}
        for record in self._streams.values():
            if record.node_id != host.node_id:
                continue
            stream = found.get((record.config.name, record.placement))
            if stream is None:
                if record.placed_at < asked_at:  # it should have been in this report
                    log.warning(
                        "stream %r no longer runs on node %s: placing it again",
                        record.config.name,
                        host.node_id,
                    )
                    record.unplace(None, StreamState.WAITING)
                continue
            resumed = stream.first_delivery_wall
            if record.lost_wall is not None and resumed is not None:
                log.info(
                    "stream %r delivers again on node %s, %.1f s after its node was lost",
                    stream.name,
                    host.node_id,
                    resumed - record.lost_wall,
                )
                record.lost_wall = None
            if stream.state is StreamState.FAILED and record.state is not StreamState.FAILED:
                log.error(
                    "stream %r failed on node %s:\n%s", stream.name, host.node_id, stream.error
                )
            record.update(stream)

    # ------------------------------------------------------------------ the watch
    def _watch(self) -> None:
        next_scan = time.monotonic() + NODE_SCAN_S
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                self._round()
                if started >= next_scan:
                    next_scan = started + NODE_SCAN_S
                    with self._lock:
                        if not self._closed:
                            self._scan_nodes()
                            self._publish()
            except Exception:
                if self._stopping.is_set():
                    return
                log.exception("the cluster's watch failed a round; it goes on")
            self._stopping.wait(max(0.0, self._period - (time.monotonic() - started)))

    def _round(self) -> None:
        """Ask every host for its report, take the answers that come within the period."""
        with self._lock:
            now = time.monotonic()
            for host in self._hosts.values():
                if host.usable and host.pending is None:
                    host.ask_report(now)
            pending = {h.pending: h for h in self._hosts.values() if h.alive and h.pending}
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=self._period)
        else:
            ready = []
        with self._lock:
            if self._closed:
                return
            for ref in ready:
                host = pending[ref]
                if host.alive and host.pending is ref:
                    self._answered(host, ref)
            self._place_waiting()
            self._publish()

    def _lose(self, host: RemoteHost, why: str) -> None:
        """The host is gone (its node, or its process): its streams are set up again on the
        survivors. The lock held."""
        if not host.alive:
            return
        host.kill()
        now = time.time()
        lost = [r for r in self._streams.values() if r.node_id == host.node_id]
        running = sum(1 for r in lost if r.state is StreamState.RUNNING)
        log.warning("node %s lost (%s): %d stream(s) to re-place", host.node_id, why, running)
        for record in lost:
            if record.state is not StreamState.RUNNING:
                # failed (a bug of its spec: not run again), or being moved or stopped by a
                # call that goes on from here
                record.unplace(None, record.state)
                continue
            record.unplace(None, StreamState.WAITING)
            record.restarts += 1
            record.lost_wall = now
        # its segments outlive it where the machine does: the survivors' sweep unlinks them
        for survivor in self._hosts.values():
            if survivor.usable:
                survivor.call("reclaim")
        reclaim_orphans()
        self._place_waiting()

    def _place_waiting(self) -> None:
        for record in list(self._streams.values()):
            if record.state is not StreamState.WAITING:
                continue
            restart = record.restarts > 0 and record.lost_wall is not None
            record.state = StreamState.STARTING  # not picked again while it is being placed
            try:
                self._place(record)
            except ClusterError as error:
                record.state = StreamState.WAITING
                log.error("stream %r waits for a node: %s", record.config.name, error)
                continue
            except Exception as error:  # its setup raised on the new node
                record.state = StreamState.FAILED
                record.error = f"{type(error).__name__}: {error}"
                log.error("stream %r could not be set up again: %s", record.config.name, error)
                continue
            if restart:
                self._failovers += 1
            log.warning(
                "stream %r re-placed on node %s at frame %d (restart %d, %d frames lost so far)",
                record.config.name,
                record.node_id,
                record.report.first_index if record.report else record.last_index + 1,
                record.restarts,
                record.dropped,
            )

    # ------------------------------------------------------------------ placement
    def _loads(self, now: float) -> list[NodeLoad]:
        """What placement knows of each live node: one pass over the streams, then one over
        the hosts (a placement costs O(streams + nodes), not their product)."""
        by_node: dict[str, list[StreamRecord]] = {}
        for record in self._streams.values():
            if record.node_id is not None:
                by_node.setdefault(record.node_id, []).append(record)
        live = [h for h in self._hosts.values() if h.usable]
        # a node that measured nothing yet is predicted from what the others measured
        measured = sorted(h.ns_per_pixel for h in live if h.ns_per_pixel is not None)
        typical = measured[len(measured) // 2] if measured else None
        loads = []
        for host in live:
            streams = by_node.get(host.node_id, [])
            ns = host.ns_per_pixel if host.ns_per_pixel is not None else typical
            loads.append(
                NodeLoad(
                    host.node_id,
                    float(host.cpus),
                    sum(r.demand(ns, now) for r in streams),
                    len(streams),
                )
            )
        return loads

    def _place(self, record: StreamRecord, node_id: str | None = None) -> None:
        """Start the stream on ``node_id``, or on the node with the most unreserved capacity
        that has room. The lock held."""
        tried: list[str] = []
        config = record.config
        while True:
            if node_id is not None:
                target = self._usable_host(node_id)
            else:
                load = choose_node(self._loads(time.time()), exclude=tried)
                if load is None:
                    raise ClusterError(
                        f"no node can take stream {config.name!r}"
                        + (f" (full: {', '.join(tried)})" if tried else " (no live node)")
                    )
                target = self._hosts[load.node_id]
            ref = target.call(
                "start",
                config.name,
                config.spec,
                placement=next(self._placements),
                width=config.width,
                height=config.height,
                output=config.output,
                fps=config.fps,
                weight=config.weight,
                slots=config.slots,
                policy=config.policy,
                epoch=record.epoch,
                last_index=record.last_index,
            )
            try:
                report: StreamReport = ray.get(ref, timeout=self._start_timeout)
            except SlotReservationError:
                if node_id is not None:
                    raise
                tried.append(target.node_id)
                continue
            except (GetTimeoutError, ActorUnavailableError) as error:
                # it may still come up there: it must not run unknown to the driver
                target.call("stop", config.name)
                raise ClusterError(
                    f"stream {config.name!r} was not set up on node {target.node_id} within "
                    f"{self._start_timeout:g} s ({type(error).__name__})"
                ) from error
            except RayActorError as error:
                self._lose(target, f"its host died ({type(error).__name__})")
                if node_id is not None:
                    raise ClusterError(f"node {node_id} was lost") from error
                continue
            record.placed(target.node_id, report, time.time())
            return

    def _stop_on_node(self, record: StreamRecord) -> StreamReport | None:
        """Stop the stream where it runs; its final figures there (None if its host is gone:
        then the host is lost). The lock held."""
        if record.node_id is None:
            return None
        host = self._hosts[record.node_id]
        if not host.alive:
            return None
        try:
            return ray.get(host.call("stop", record.config.name), timeout=CONTROL_TIMEOUT_S)
        except RayActorError as error:
            if not isinstance(error, ActorUnavailableError):
                self._lose(host, f"its host died ({type(error).__name__})")
            return None

    # ------------------------------------------------------------------ streams
    def open_stream(
        self,
        name: str,
        spec: StreamSpec,
        *,
        width: int,
        height: int,
        fps: float = 30.0,
        weight: float = 1.0,
        output: str = "rgba",
        slots: int = DEFAULT_STREAM_SLOTS,
        policy: Policy = "drop",
        node_id: str | None = None,
    ) -> ClusterStream:
        """Place a stream on the node with the most unreserved capacity (or on ``node_id``),
        run ``spec.setup`` there and start its live loop at ``fps``. Returns once it runs;
        the spec's own exceptions from ``setup`` come back here.

        Raises:
            ClusterError: no live node has room for it (or ``node_id`` has no live host).
            InvalidArgumentError: a bad argument, or a spec that does not pickle.
        """
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("a stream's name must be a non-empty string")
        if not isinstance(spec, StreamSpec):
            raise InvalidTypeError(
                f"spec must be a framering.cluster.StreamSpec, not {type(spec).__name__}"
            )
        if policy not in POLICIES:
            raise InvalidValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        slots = positive_int(slots, "slots", self._ring_slots)
        if slots < LIVE_LOOP_SLOTS:
            raise InvalidValueError(
                f"a stream needs slots >= {LIVE_LOOP_SLOTS} (one frame shown while the next "
                f"renders), not {slots}"
            )
        try:
            pickled = ray.cloudpickle.dumps(spec)
        except Exception as error:
            raise InvalidArgumentError(
                f"the spec of stream {name!r} cannot be pickled to its node: {error}"
            ) from error
        config = StreamConfig(
            name,
            pickled,
            positive_int(width, "width", MAX_SIDE),
            positive_int(height, "height", MAX_SIDE),
            str(output),
            check_fps(fps),
            check_weight(weight),
            slots,
            policy,
        )
        with self._lock:
            self._check_open()
            if name in self._streams:
                raise InvalidValueError(f"a stream named {name!r} is open already")
            record = StreamRecord(config)
            try:
                self._place(record, node_id)
            finally:
                self._publish()
            self._streams[name] = record
            self._publish()
        log.info("stream %r opened on node %s", name, record.node_id)
        return ClusterStream(self, name)

    def move(self, stream: ClusterStream | str, node_id: str) -> None:
        """Re-place a stream on ``node_id`` by hand: it stops on its node (``teardown``
        there), then ``setup`` runs on the new one, and it carries on at the frame due then.
        If the new node cannot take it, it is placed wherever there is room, and the error is
        raised."""
        name = stream.name if isinstance(stream, ClusterStream) else stream
        with self._lock:
            self._check_open()
            record = self._record(name)
            self._usable_host(node_id)
            if record.node_id == node_id:
                return
            if record.state is StreamState.FAILED:
                raise InvalidValueError(f"stream {name!r} failed: stop it, and open it anew")
            record.state = StreamState.MOVING  # a loss of its node meanwhile leaves it to us
            final = self._stop_on_node(record)
            record.unplace(final, StreamState.STARTING)
            record.moves += 1
            try:
                self._place(record, node_id)
            except Exception:
                log.exception("stream %r could not move to node %s", name, node_id)
                record.state = StreamState.WAITING
                self._place_waiting()  # somewhere, rather than nowhere
                raise
            finally:
                self._publish()
        log.info("stream %r moved to node %s", name, node_id)

    def stop_stream(self, name: str) -> ClusterStreamMetrics:
        """Stop a stream and forget it (``ClusterStream.stop``); its final figures."""
        with self._lock:
            record = self._record(name)
            failed = record.state is StreamState.FAILED
            record.state = StreamState.FAILED if failed else StreamState.STOPPED
            final = self._stop_on_node(record)
            record.unplace(final, record.state)
            del self._streams[name]
            self._publish()
        log.info("stream %r stopped", name)
        return record.figures(None, time.time())

    def _record(self, name: str) -> StreamRecord:
        record = self._streams.get(name)
        if record is None:
            raise InvalidValueError(f"the cluster has no stream named {name!r}")
        return record

    def _usable_host(self, node_id: str) -> RemoteHost:
        host = self._hosts.get(node_id)
        if host is None or not host.usable:
            raise ClusterError(f"node {node_id} has no live framering host")
        return host

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("the cluster is closed")

    # ------------------------------------------------------------------ figures
    def _publish(self) -> None:
        """Make the snapshot ``metrics()`` gives (the lock held)."""
        now = time.time()
        streams: dict[str, ClusterStreamMetrics] = {}
        by_node: dict[str, list[ClusterStreamMetrics]] = {}
        for name, record in self._streams.items():
            host = self._hosts.get(record.node_id) if record.node_id else None
            figures = record.figures(host.ns_per_pixel if host else None, now)
            streams[name] = figures
            if figures.node_id is not None:
                by_node.setdefault(figures.node_id, []).append(figures)
        nodes = {
            host.node_id: _node_figures(host, by_node.get(host.node_id, []))
            for host in self._hosts.values()
        }
        self._snapshot = ClusterMetrics(nodes, streams, self._counter.calls, self._failovers)

    def metrics(self) -> ClusterMetrics:
        """Per node and per stream, as of the hosts' last reports (no Ray call, no wait)."""
        return self._snapshot

    def stream_metrics(self, name: str) -> ClusterStreamMetrics:
        """One stream's figures (``metrics().streams[name]``)."""
        figures = self._snapshot.streams.get(name)
        if figures is None:
            raise InvalidValueError(f"the cluster has no stream named {name!r}")
        return figures

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Stop every stream, close every host's engines, shut down the Ray this cluster
        started. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stopping.set()
        self._watcher.join(self._period + CONTROL_TIMEOUT_S)
        forget_at_exit(self)
        try:
            with self._lock:
                self._close_hosts()
                for record in self._streams.values():
                    record.unplace(None, StreamState.STOPPED)
                self._publish()
        finally:
            self._shutdown_ray()
            reclaim_orphans()

    def _close_hosts(self) -> None:
        hosts = [h for h in self._hosts.values() if h.alive]
        try:
            closing = {h.call("close"): h for h in hosts}
            done, _ = ray.wait(list(closing), num_returns=len(closing), timeout=CONTROL_TIMEOUT_S)
            for ref in done:
                try:
                    ray.get(ref)
                except RayError as error:
                    log.warning(
                        "the host on node %s failed to close: %s", closing[ref].node_id, error
                    )
            for ref, host in closing.items():
                if ref not in done:
                    log.warning("the host on node %s did not close in time", host.node_id)
        finally:
            for host in hosts:
                host.kill()

    def _shutdown_ray(self) -> None:
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()


def _node_figures(host: RemoteHost, mine: list[ClusterStreamMetrics]) -> NodeMetrics:
    report = host.report
    return NodeMetrics(
        node_id=host.node_id,
        alive=host.alive,
        capacity=float(host.cpus),
        reserved=sum(s.demand for s in mine),
        workers=0 if report is None or not host.alive else report.workers,
        fps=sum(s.fps for s in mine),
        streams=tuple(s.name for s in mine),
        host_pid=None if report is None else report.pid,
        worker_pids=() if report is None or not host.alive else report.worker_pids,
    )
