"""A node's host without Ray: it runs specs on its engines and reports on them."""

from __future__ import annotations

import pathlib
import pickle
import time

import psutil
import pytest

from framering import SlotReservationError
from framering.cluster import host as host_module
from framering.cluster.figures import StreamState
from framering.cluster.host import NodeHost
from tests.cluster import specs
from tests.cluster.specs import (
    SIZE,
    FailsAtFrame,
    FailsOnSetup,
    Recording,
    delivered,
    lines,
    wait_for,
)


def _start(host: NodeHost, name: str, spec: object, **options: object):  # type: ignore[no-untyped-def]
    arguments = dict(
        placement=0,
        width=SIZE[0],
        height=SIZE[1],
        output="rgba",
        fps=60.0,
        weight=1.0,
        slots=3,
        policy="drop",
        epoch=None,
        last_index=-1,
    )
    arguments.update(options)
    return host.start(name, pickle.dumps(spec), **arguments)  # type: ignore[arg-type]


@pytest.fixture
def host():  # type: ignore[no-untyped-def]
    node = NodeHost("node-a", cpus=1, ring_slots=6)
    yield node
    node.close()


def test_a_stream_runs_its_spec_and_stops_with_teardown(
    host: NodeHost, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / "s")
    started = _start(host, "s", Recording(path, shade=200))
    assert (started.first_index, started.state) == (0, StreamState.RUNNING)
    assert wait_for(lambda: len(delivered(path)) >= 20, timeout=10)
    final = host.stop("s")
    assert final is not None and final.delivered >= 20
    text = lines(path)
    assert text[0] == "setup" and "teardown" in text
    indices = delivered(path)
    assert indices == sorted(set(indices)) and indices[0] == 0
    assert all(line.split()[2] == "200" for line in text if line[:1].isdigit())
    assert host.stop("s") is None  # gone


def test_a_stream_placed_again_carries_on_with_the_frame_due_by_its_epoch(
    host: NodeHost, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / "s")
    epoch = time.time() - 10.0  # its frame 0 was 10 s ago, at 60 fps
    report = _start(host, "s", Recording(path), epoch=epoch, last_index=41)
    # the frame due once it was set up (its node's engine started meanwhile)
    assert 599 <= report.first_index <= (time.time() - epoch) * 60 + 1
    assert wait_for(lambda: len(delivered(path)) >= 5, timeout=10)
    host.stop("s")
    assert delivered(path)[0] >= report.first_index
    # and never a frame it delivered already, whatever the clock says
    report = _start(host, "t", Recording(str(tmp_path / "t")), epoch=time.time(), last_index=41)
    assert report.first_index == 42


def test_a_setup_that_raises_fails_the_start_and_gives_the_slots_back(host: NodeHost) -> None:
    with pytest.raises(RuntimeError, match="unplugged"):
        _start(host, "s", FailsOnSetup())
    for name in ("a", "b"):  # 2 x 3 slots: the failed stream holds none of the ring's 6
        _start(host, name, Recording("/dev/null"))


def test_a_ring_without_room_refuses_the_stream_clearly(host: NodeHost) -> None:
    _start(host, "a", Recording("/dev/null"), slots=4)
    with pytest.raises(SlotReservationError, match="node-a has no room for stream 'b'"):
        _start(host, "b", Recording("/dev/null"), slots=3)


def test_a_spec_that_raises_mid_stream_is_reported_failed_with_its_traceback(
    host: NodeHost, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / "s")
    _start(host, "s", FailsAtFrame(path, bad=10))
    assert wait_for(lambda: host.report().streams[0].state is StreamState.FAILED, timeout=10)
    (report,) = host.report().streams
    assert "ValueError: no layers for frame 10" in (report.error or "")
    assert delivered(path)[-1] < 10 and "teardown" in lines(path)


def test_reports_name_the_streams_workers_and_worker_time(
    host: NodeHost, tmp_path: pathlib.Path
) -> None:
    _start(host, "s", Recording(str(tmp_path / "s")))
    assert wait_for(lambda: host.report().streams[0].delivered >= 30, timeout=10)
    report = host.report()
    assert report.node_id == "node-a" and report.cpus == 1
    assert report.workers >= 1 and len(report.worker_pids) == report.workers
    assert report.worker_seconds > 0 and report.frame_pixels >= 30 * SIZE[0] * SIZE[1]


def test_close_stops_every_stream_and_leaves_no_worker(tmp_path: pathlib.Path) -> None:
    node = NodeHost("node-a", cpus=1)
    _start(node, "s", Recording(str(tmp_path / "s")))
    _start(node, "t", Recording(str(tmp_path / "t")), width=64, height=64)  # a 2nd engine
    pids = node.report().worker_pids
    assert len(pids) == 2
    assert sorted(node.close()) == sorted(pids)
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert "teardown" in lines(str(tmp_path / "s")) and "teardown" in lines(str(tmp_path / "t"))
    with pytest.raises(ValueError, match="closing"):
        _start(node, "u", Recording("/dev/null"))


def test_the_engines_of_a_node_together_run_no_more_workers_than_its_cores(
    tmp_path: pathlib.Path,
) -> None:
    """Two frame sizes make two engines; both are overloaded, and each alone would grow to the
    node's two cores: together they stay within them (the host's worker budget)."""
    node = NodeHost("node-b", cpus=2, ring_slots=6)
    try:
        _start(node, "s", specs.NeverDone(str(tmp_path / "s")), fps=1000.0)
        _start(node, "t", specs.NeverDone(str(tmp_path / "t")), fps=1000.0, width=128, height=64)
        budget = node.worker_budget
        assert wait_for(lambda: budget.contended, 30)  # an engine wants a third worker
        deadline = time.monotonic() + 1.0
        most = 0
        while time.monotonic() < deadline:  # workers ready, and the budget's count
            most = max(most, node.report().workers, budget.taken)
            time.sleep(0.02)
        assert most == 2
        assert {r.state for r in node.report().streams} == {StreamState.RUNNING}
    finally:
        node.close()


def test_an_engine_no_stream_uses_is_closed_after_a_while(
    host: NodeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_module, "ENGINE_IDLE_S", 0.0)
    _start(host, "s", Recording("/dev/null"))
    pids = host.report().worker_pids
    assert pids and host.report().workers == 1  # in use: kept
    host.stop("s")
    report = host.report()  # the report closes what nobody uses
    assert report.workers == 0 and not report.worker_pids
    assert wait_for(lambda: not any(psutil.pid_exists(pid) for pid in pids), 5)
    _start(host, "t", Recording("/dev/null"))  # a stream of that size makes a new one
    assert host.report().workers == 1


def test_a_stream_stops_even_when_no_frame_comes_out(
    host: NodeHost, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / "s")
    _start(host, "s", specs.NeverDone(path), fps=1000.0)
    time.sleep(0.5)  # nearly every frame is late: few come out, scene is still called
    started = time.monotonic()
    final = host.stop("s")
    assert time.monotonic() - started < 2.0
    assert final is not None and final.dropped > 3 * final.delivered
    assert "teardown" in lines(path)


def test_a_stream_stopped_while_it_sets_up_never_runs(
    host: NodeHost, tmp_path: pathlib.Path
) -> None:
    import threading

    path = str(tmp_path / "slow")
    errors: list[BaseException] = []

    def start() -> None:
        try:
            _start(host, "slow", specs.SlowSetup(path, seconds=1.0))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=start)
    thread.start()
    time.sleep(0.3)
    assert host.stop("slow") is None  # still setting up: it is cancelled
    thread.join(10)
    assert errors and "stopped while it was being set up" in str(errors[0])
    assert not host.report().streams
    assert "teardown" in lines(path)
