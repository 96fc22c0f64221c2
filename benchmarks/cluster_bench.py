"""The cluster benchmark: what the driver pays per stream, and how long a failover leaves a
stream dark, on a Ray cluster simulated on this machine (``ray.cluster_utils``).

- **Steady state**: S paced streams per node (a 640x360 show: a still backdrop, a moving
  card, a live "camera" that publishes every frame) on K one-CPU nodes. Over a window: the
  driver process's CPU time (every thread) per stream per second, the driver's Ray calls per
  stream per second, the frames each node delivered per second. Two stream counts, so that the
  driver's cost splits into a part per node (reports) and a part per stream.
- **Failover**: one node is killed (``remove_node(allow_graceful=False)``); for each of its
  streams, the time from the kill to its first frame delivered on a survivor, and the frames
  lost. Ray's health checks are lowered as its own tests do (``HEALTH_CHECKS``): with Ray's
  defaults, detection alone takes about 20 s more.

    framering bench --cluster [--full] [--out DIR]      (needs pip install 'framering[cluster]')
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from framering.kernels import warmup

from .timing import progress, progress_done, report, results_stamp

DEFAULT_RESULTS = Path("benchmarks") / "results"
# The show each stream runs (``cluster_show``, which imports Ray: this module must not).
WIDTH, HEIGHT, FPS = 640, 360, 30.0
HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
OBJECT_STORE = 80 * 2**20
REPORT_PERIOD_S = 1.0


@dataclass(frozen=True)
class Plan:
    nodes: int
    per_node: tuple[int, ...]
    seconds: float


def plan_for(full: bool, smoke: bool) -> Plan:
    if smoke:  # proves the pipeline runs; its figures mean nothing
        return Plan(2, (1,), 2.0)
    if full:
        return Plan(3, (1, 4), 15.0)
    return Plan(2, (1, 4), 8.0)


@dataclass
class Results:
    steady: list[dict[str, object]] = field(default_factory=list)
    failover: dict[str, object] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def driver_cpu() -> float:
    """CPU seconds of this whole process, every thread (Ray's own driver threads too), at
    nanosecond resolution (psutil's cpu_times counts 10 ms clock ticks)."""
    return time.process_time()


def steady(cluster, show: type, per_node: int, nodes: int, seconds: float) -> dict[str, object]:  # type: ignore[no-untyped-def]
    count = per_node * nodes
    streams = [
        cluster.open_stream(f"show-{per_node}-{i}", show(), width=WIDTH, height=HEIGHT, fps=FPS)
        for i in range(count)
    ]
    time.sleep(2.0)  # past the first frames and a report or two
    before = cluster.metrics()
    cpu, began = driver_cpu(), time.perf_counter()
    time.sleep(seconds)
    cpu, elapsed = driver_cpu() - cpu, time.perf_counter() - began
    after = cluster.metrics()
    per_node_fps = {
        node_id[:8]: sum(
            after.streams[s].delivered - before.streams[s].delivered
            for s in after.streams
            if after.streams[s].node_id == node_id
        )
        / elapsed
        for node_id in after.nodes
    }
    dropped = sum(after.streams[s].dropped - before.streams[s].dropped for s in after.streams)
    for stream in streams:
        stream.stop()
    return {
        "nodes": nodes,
        "streams": count,
        "seconds": elapsed,
        "driver_cpu_s_per_s": cpu / elapsed,
        "driver_cpu_ms_per_stream_s": cpu / elapsed / count * 1e3,
        "ray_calls_per_stream_s": (after.ray_calls - before.ray_calls) / elapsed / count,
        "ray_calls_per_s": (after.ray_calls - before.ray_calls) / elapsed,
        "fps_per_node": per_node_fps,
        "dropped": dropped,
    }


def failover(cluster, show: type, simulated, nodes: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    count = 2 * nodes
    streams = [
        cluster.open_stream(f"fail-{i}", show(), width=WIDTH, height=HEIGHT, fps=FPS)
        for i in range(count)
    ]
    time.sleep(3.0)
    victim = streams[0].node_id
    lost = [s for s in streams if s.node_id == victim]
    before = {s.name: s.metrics().dropped for s in lost}
    (node,) = [n for n in simulated.list_all_nodes() if n.node_id == victim]
    killed = time.time()
    simulated.remove_node(node, allow_graceful=False)
    deadline = time.monotonic() + 60
    dark: dict[str, float] = {}
    while len(dark) < len(lost) and time.monotonic() < deadline:
        for stream in lost:
            figures = stream.metrics()
            since = figures.delivering_since
            if figures.node_id not in (None, victim) and since is not None and since > killed:
                dark[stream.name] = since - killed
        time.sleep(0.05)
    time.sleep(REPORT_PERIOD_S * 2)
    frames_lost = [s.metrics().dropped - before[s.name] for s in lost]
    for stream in streams:
        stream.stop()
    return {
        "streams_lost": len(lost),
        "resumed": len(dark),
        "dark_s_median": statistics.median(dark.values()) if dark else float("nan"),
        "dark_s_max": max(dark.values(), default=float("nan")),
        "frames_lost_median": statistics.median(frames_lost) if frames_lost else 0,
        "health_checks": HEALTH_CHECKS,
    }


def idle_driver(seconds: float) -> float:
    """CPU seconds per second of a driver connected to Ray that does nothing (Ray's own
    threads): what every figure below includes."""
    cpu, began = driver_cpu(), time.perf_counter()
    time.sleep(seconds)
    return (driver_cpu() - cpu) / (time.perf_counter() - began)


def call_cost(echo_class: type, calls: int) -> float:
    """Driver CPU seconds of one Ray actor call and its answer (a report is one)."""
    import ray

    actor = ray.remote(echo_class).options(num_cpus=0).remote()
    ray.get(actor.echo.remote(0))
    cpu = driver_cpu()
    for i in range(calls):
        ray.get(actor.echo.remote(i))
    cost = (driver_cpu() - cpu) / calls
    ray.kill(actor)
    return cost


def report_cost(streams: int, rounds: int) -> tuple[float, float]:
    """Driver CPU seconds to take one stream's share of a host report (unpickle its figures
    and fold them into the stream's books: what the watch does per stream per period), and
    the bytes of that share."""
    import ray.cloudpickle

    from framering.cluster.figures import HostReport, StreamReport, StreamState
    from framering.cluster.ledger import StreamConfig, StreamRecord

    figures = [
        StreamReport(
            f"show-{i}",
            0,
            StreamState.RUNNING,
            900,
            0,
            899,
            0.0,
            1.0,
            30.0,
            0.001,
            0.002,
            0,
            0,
            0,
            0.5,
            None,
        )
        for i in range(streams)
    ]
    report = HostReport("n" * 56, 1, 8, 8, tuple(range(8)), 10**9, 5.0, tuple(figures), 0.0)
    records = [
        StreamRecord(StreamConfig(f.name, b"", 640, 360, "rgba", 30.0, 1.0, 3, "drop"))
        for f in figures
    ]
    data = ray.cloudpickle.dumps(report)
    cpu = driver_cpu()
    for _ in range(rounds):
        received = ray.cloudpickle.loads(data)
        for record, stream in zip(records, received.streams, strict=True):
            record.update(stream)
            record.figures(1.0, 10.0)
    cost = (driver_cpu() - cpu) / rounds / streams
    alone = len(ray.cloudpickle.dumps(dataclasses.replace(report, streams=())))
    return cost, (len(data) - alone) / streams


def table(out: Results) -> str:
    header = (
        f"{'nodes':>5} {'streams':>7} {'driver CPU':>10} {'per stream':>10} "
        f"{'Ray calls':>9} {'per stream':>10} {'fps per node':>24} {'dropped':>7}"
    )
    lines = [header, f"{'':>5} {'':>7} {'ms/s':>10} {'ms/s':>10} {'/s':>9} {'/s':>10}", "-" * 90]
    for row in out.steady:
        fps = " ".join(f"{v:.1f}" for v in row["fps_per_node"].values())  # type: ignore[attr-defined]
        lines.append(
            f"{row['nodes']:>5} {row['streams']:>7} "
            f"{float(row['driver_cpu_s_per_s']) * 1e3:>10.2f} "  # type: ignore[arg-type]
            f"{float(row['driver_cpu_ms_per_stream_s']):>10.3f} "  # type: ignore[arg-type]
            f"{float(row['ray_calls_per_s']):>9.2f} "  # type: ignore[arg-type]
            f"{float(row['ray_calls_per_stream_s']):>10.3f} {fps:>24} {row['dropped']:>7}"  # type: ignore[arg-type]
        )
    if out.costs:
        c = out.costs
        lines += [
            "",
            "driver, measured apart: Ray connected and idle "
            f"{c['idle_ray_driver_s_per_s'] * 1e3:.2f} ms/s; one Ray actor call "
            f"{c['ray_call_s'] * 1e6:.0f} us; taking one stream's share of a report "
            f"{c['report_per_stream_s'] * 1e6:.1f} us and "
            f"{c['report_bytes_per_stream']:.0f} bytes",
        ]
    if out.failover:
        f = out.failover
        lines += [
            "",
            f"failover: {f['resumed']}/{f['streams_lost']} streams of the killed node resumed; "
            f"dark from the kill to the first frame elsewhere: median "
            f"{float(f['dark_s_median']):.2f} s, max {float(f['dark_s_max']):.2f} s; "  # type: ignore[arg-type]
            f"frames lost per stream: median {f['frames_lost_median']}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="framering bench --cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--full", action="store_true", help="three nodes, longer windows")
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results folder")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        import ray
        from ray.cluster_utils import Cluster as SimulatedCluster

        from framering.cluster import Cluster

        from .cluster_show import Echo, Show
    except ImportError as error:
        print(f"framering bench --cluster needs: pip install 'framering[cluster]' ({error})")
        return 2
    plan = plan_for(args.full, args.smoke)
    out = Results()
    started = time.perf_counter()
    progress(f"compiling kernels: {warmup():.1f} s")
    saved = {name: os.environ.get(name) for name in HEALTH_CHECKS}
    os.environ.update(HEALTH_CHECKS)  # before Ray starts: its processes read them
    progress(f"starting a simulated Ray cluster of {plan.nodes} one-CPU nodes")
    simulated = SimulatedCluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": OBJECT_STORE,
        },
    )
    try:
        for _ in range(plan.nodes):
            simulated.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
        simulated.wait_for_nodes()
        ray.init(address=simulated.address, include_dashboard=False, log_to_driver=False)
        progress("the driver's own costs: Ray idle, one Ray call, one stream's report")
        out.costs = {
            "idle_ray_driver_s_per_s": idle_driver(plan.seconds / 2),
            "ray_call_s": call_cost(Echo, 50 if args.smoke else 500),
        }
        out.costs["report_per_stream_s"], out.costs["report_bytes_per_stream"] = report_cost(
            10, 20 if args.smoke else 500
        )
        with Cluster(report_period=REPORT_PERIOD_S) as cluster:
            for per_node in plan.per_node:
                progress(f"steady: {per_node} stream(s) per node on {plan.nodes} nodes")
                out.steady.append(steady(cluster, Show, per_node, plan.nodes, plan.seconds))
            progress("failover: killing a node")
            out.failover = failover(cluster, Show, simulated, plan.nodes)
    finally:
        ray.shutdown()
        simulated.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    progress_done()
    if len(out.steady) >= 2:
        low, high = out.steady[0], out.steady[-1]
        extra = int(high["streams"]) - int(low["streams"])  # type: ignore[call-overload]
        per_stream = (
            float(high["driver_cpu_s_per_s"]) - float(low["driver_cpu_s_per_s"])  # type: ignore[arg-type]
        ) / extra
        out.notes.append(
            f"driver CPU per extra stream: {per_stream * 1e3:.3f} ms/s (the rest is per node "
            f"and fixed: the watch thread and Ray's own driver threads)"
        )
    stamp = results_stamp(args.out)
    report(
        args.out / f"cluster-{stamp}.json",
        table(out),
        "what the cluster issue asks to report (no targets):",
        [
            "driver CPU per stream per second, Ray calls per stream per second, delivered "
            "fps per node, failover time: above"
        ],
        out.notes,
        {
            "steady": out.steady,
            "failover": out.failover,
            "costs": out.costs,
            "report_period_s": REPORT_PERIOD_S,
        },
        [],
        mode="full" if args.full else "quick",
        started=started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
