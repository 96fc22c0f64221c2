"""framering.cluster on a Ray cluster simulated on this machine (``ray.cluster_utils``).

One simulated cluster of three 1-CPU nodes serves the whole module, and one framering Cluster
on it, as starting them costs seconds: the tests run in file order, the node-loss test kills
a node and the last test closes everything. Ray's health checks are lowered so that a lost
node is declared dead within about 3 s, as Ray's own tests do.
"""

from __future__ import annotations

import logging
import os
import pathlib
import re
import time
from collections.abc import Iterator

import psutil
import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster as SimulatedCluster  # noqa: E402

import tests.cluster.specs as specs  # noqa: E402
from framering import InvalidArgumentError, InvalidTypeError, InvalidValueError  # noqa: E402
from framering.cluster import Cluster, ClusterError, StreamState  # noqa: E402
from tests.cluster.specs import SIZE, delivered, lines, wait_for  # noqa: E402

HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}
# what Ray needs to declare a killed node dead, with the checks above (period x threshold,
# plus the timeout of the last one), and what the tests allow on top on a loaded machine
DETECTION_S = 3.0
SLACK_S = 12.0
OBJECT_STORE = 80 * 2**20

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def simulated() -> Iterator[SimulatedCluster]:
    saved = {name: os.environ.get(name) for name in HEALTH_CHECKS}
    os.environ.update(HEALTH_CHECKS)
    sim = SimulatedCluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": OBJECT_STORE,
        },
    )
    for _ in range(3):
        sim.add_node(num_cpus=1, object_store_memory=OBJECT_STORE)
    sim.wait_for_nodes()
    ray.init(address=sim.address, include_dashboard=False)
    # the specs travel by value: the nodes' workers need not find the tests package
    ray.cloudpickle.register_pickle_by_value(specs)
    try:
        yield sim
    finally:
        ray.shutdown()
        sim.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def cluster(simulated: SimulatedCluster) -> Iterator[Cluster]:
    with Cluster(report_period=0.5) as framering_cluster:
        yield framering_cluster


def _open(cluster: Cluster, name: str, path: pathlib.Path, **options: object):  # type: ignore[no-untyped-def]
    return cluster.open_stream(
        name, specs.Recording(str(path)), width=SIZE[0], height=SIZE[1], fps=30, **options
    )


def _in_order(path: pathlib.Path) -> list[int]:
    indices = delivered(str(path))
    assert indices == sorted(set(indices)), f"{path.name} delivered out of order"
    return indices


def _plasma_objects() -> tuple[int, int]:
    """(MiB used, objects) of every node's object store, as Ray's memory summary says."""
    from ray._private.internal_api import memory_summary

    summary = memory_summary(stats_only=True)
    found = re.search(r"Plasma memory usage (\d+) MiB, (\d+) objects", summary)
    assert found, summary
    return int(found.group(1)), int(found.group(2))


def test_every_node_gets_a_host_and_streams_spread_over_them_delivering_in_order(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    assert len(cluster.node_ids) == 3
    streams = [_open(cluster, f"spread-{i}", tmp_path / f"s{i}") for i in range(3)]
    assert len({s.node_id for s in streams}) == 3  # one per node: each had the most room
    assert wait_for(
        lambda: all(len(delivered(str(tmp_path / f"s{i}"))) >= 45 for i in range(3)), 20
    )
    time.sleep(1.0)  # a report or two
    figures = cluster.metrics()
    for i, stream in enumerate(streams):
        indices = _in_order(tmp_path / f"s{i}")
        assert indices[0] == 0
        mine = figures.streams[stream.name]
        assert mine.state is StreamState.RUNNING and mine.node_id == stream.node_id
        assert mine.fps > 20 and mine.delivered >= 30 and mine.demand > 0
        node = figures.nodes[stream.node_id]
        assert node.alive and node.streams == (stream.name,) and node.fps > 20
        assert node.workers >= 1 and node.capacity == 1.0
    for stream in streams:
        final = stream.stop()
        assert final.state is StreamState.STOPPED and final.delivered >= 45
    assert all(lines(str(tmp_path / f"s{i}"))[-2] == "teardown" for i in range(3))


def test_frames_stay_off_ray_and_the_driver_sends_only_reports(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    streams = [_open(cluster, f"quiet-{i}", tmp_path / f"q{i}") for i in range(3)]
    time.sleep(1.0)
    store_before = _plasma_objects()
    calls_before, delivered_before = (
        cluster.metrics().ray_calls,
        sum(len(delivered(str(tmp_path / f"q{i}"))) for i in range(3)),
    )
    started = time.monotonic()
    time.sleep(4.0)
    elapsed = time.monotonic() - started
    calls = cluster.metrics().ray_calls - calls_before
    frames = sum(len(delivered(str(tmp_path / f"q{i}"))) for i in range(3)) - delivered_before
    store_after = _plasma_objects()
    assert frames >= 3 * 30 * 3  # about 360 frames went by...
    assert store_after == store_before  # ...and not one byte of them through the object store
    # one report per node per period (0.5 s): a few calls a second per stream at most
    assert calls / len(streams) / elapsed <= 3.0
    for stream in streams:
        stream.stop()


def test_a_stream_moved_by_hand_carries_on_in_order_on_its_new_node(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "moving"
    stream = _open(cluster, "moving", path)
    assert wait_for(lambda: len(delivered(str(path))) >= 20, 10)
    source = stream.node_id
    target = next(n for n in cluster.node_ids if n != source)
    cluster.move(stream, target)
    assert stream.node_id == target
    assert wait_for(lambda: len(delivered(str(path))) >= 60, 10)
    text = lines(str(path))
    assert text.count("setup") == 2 and text.count("teardown") == 1  # torn down on the old
    _in_order(path)
    figures = stream.stop()
    assert figures.moves == 1 and figures.restarts == 0
    assert stream.metrics() == figures and stream.node_id is None
    with pytest.raises(InvalidValueError, match="no stream named 'moving'"):
        cluster.move("moving", source)  # a stopped stream is gone


def test_bad_streams_are_refused_at_open_with_the_cause(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    def open_with(spec: object, name: str = "bad", **options: object) -> None:
        cluster.open_stream(name, spec, width=64, height=64, **options)  # type: ignore[arg-type]

    with pytest.raises(InvalidTypeError, match="StreamSpec"):
        open_with(object())
    with pytest.raises(InvalidArgumentError, match="cannot be pickled"):
        open_with(specs.Unpicklable())
    with pytest.raises(RuntimeError, match="the camera is unplugged"):
        open_with(specs.FailsOnSetup())
    with pytest.raises(InvalidValueError, match="fps"):
        open_with(specs.Recording("/dev/null"), fps=0)
    with pytest.raises(InvalidValueError, match="slots >= 2"):
        open_with(specs.Recording("/dev/null"), slots=1)
    with pytest.raises(ClusterError, match="no live framering host"):
        open_with(specs.Recording("/dev/null"), node_id="f" * 56)
    stream = _open(cluster, "taken", tmp_path / "taken")
    with pytest.raises(InvalidValueError, match="open already"):
        _open(cluster, "taken", tmp_path / "taken")
    stream.stop()
    _open(cluster, "taken", tmp_path / "taken-again").stop()  # a stopped stream's name is free
    assert "bad" not in cluster.metrics().streams  # refused streams leave nothing behind


def test_a_stream_whose_spec_raises_is_reported_failed_and_not_placed_again(
    cluster: Cluster, tmp_path: pathlib.Path
) -> None:
    spec = specs.FailsAtFrame(str(tmp_path / "f"), bad=15)
    stream = cluster.open_stream("failing", spec, width=SIZE[0], height=SIZE[1], fps=30)
    assert wait_for(lambda: stream.metrics().state is StreamState.FAILED, 10)
    figures = stream.metrics()
    assert "no layers for frame 15" in (figures.error or "")
    assert figures.restarts == 0 and figures.node_id is not None
    with pytest.raises(InvalidValueError, match="failed"):
        cluster.move(stream, next(n for n in cluster.node_ids if n != figures.node_id))
    assert stream.stop().state is StreamState.FAILED


def test_streams_of_a_lost_node_resume_on_the_survivors(
    cluster: Cluster,
    simulated: SimulatedCluster,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    victim = cluster.node_ids[0]
    streams = [_open(cluster, f"survive-{i}", tmp_path / f"v{i}", node_id=victim) for i in range(2)]
    broken = cluster.open_stream(
        "broken",
        specs.FailsAtFrame(str(tmp_path / "broken"), bad=5),
        width=SIZE[0],
        height=SIZE[1],
        node_id=victim,
    )
    others = [_open(cluster, f"bystander-{i}", tmp_path / f"b{i}") for i in range(2)]
    assert victim not in {s.node_id for s in others}  # the victim was the busiest node
    assert wait_for(lambda: len(delivered(str(tmp_path / "v1"))) >= 30, 10)
    assert wait_for(lambda: broken.metrics().state is StreamState.FAILED, 10)
    host_pid_alive = {
        pid: psutil.pid_exists(pid) for pid in cluster.metrics().nodes[victim].worker_pids
    }
    assert all(host_pid_alive.values())
    (node,) = [n for n in simulated.list_all_nodes() if n.node_id == victim]
    caplog.set_level(logging.INFO, logger="framering")
    killed = time.time()
    simulated.remove_node(node, allow_graceful=False)

    def resumed() -> bool:
        figures = cluster.metrics().streams
        return all(
            figures[s.name].node_id not in (None, victim)
            and len(delivered(str(tmp_path / f"v{i}"))) > 0
            and float(lines(str(tmp_path / f"v{i}"))[-2].split()[1]) > killed
            for i, s in enumerate(streams)
        )

    assert wait_for(resumed, DETECTION_S + SLACK_S), cluster.metrics().streams
    took = time.time() - killed
    for i, stream in enumerate(streams):
        _in_order(tmp_path / f"v{i}")  # indices go on after the gap, never back
        figures = stream.metrics()
        assert figures.restarts == 1 and figures.dropped > 0
        assert figures.node_id != victim
    # a stream that failed is a bug of its spec: it is not set up again elsewhere
    assert broken.metrics().state is StreamState.FAILED and broken.metrics().restarts == 0
    assert broken.metrics().node_id is None
    broken.stop()
    assert cluster.metrics().nodes[victim].alive is False
    assert victim not in cluster.node_ids
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("framering")]
    assert any(f"node {victim} lost" in m and "2 stream(s)" in m for m in messages), messages
    assert any("re-placed on node" in m for m in messages), messages
    # the dead host's workers went with it, and its segments were reclaimed by the survivors
    assert wait_for(lambda: not any(psutil.pid_exists(p) for p in host_pid_alive), 5)
    from framering import shm
    from tests.conftest import framering_segments

    assert wait_for(
        lambda: (
            not [
                name for name in framering_segments() if not shm.pid_alive(shm.owner_pid(name) or 0)
            ]
        ),
        5,
    )
    print(f"failover took {took:.1f} s")
    for stream in streams + others:
        stream.stop()


def test_closing_leaves_no_segment_and_no_process(
    cluster: Cluster, simulated: SimulatedCluster, tmp_path: pathlib.Path
) -> None:
    for i in range(2):
        _open(cluster, f"last-{i}", tmp_path / f"l{i}")
    assert wait_for(
        lambda: all(len(delivered(str(tmp_path / f"l{i}"))) >= 10 for i in range(2)), 10
    )
    time.sleep(1.0)
    nodes = cluster.metrics().nodes.values()
    pids = [pid for node in nodes for pid in node.worker_pids]
    pids += [node.host_pid for node in nodes if node.alive and node.host_pid is not None]
    assert len(pids) >= 4 and all(psutil.pid_exists(pid) for pid in pids)  # 2 hosts, 2 workers
    cluster.close()
    cluster.close()  # idempotent
    assert all(lines(str(tmp_path / f"l{i}"))[-2] == "teardown" for i in range(2))
    assert wait_for(lambda: not any(psutil.pid_exists(pid) for pid in pids), 5)
    from tests.conftest import framering_segments

    assert not framering_segments()
    with pytest.raises(Exception, match="closed"):
        _open(cluster, "late", tmp_path / "late")
