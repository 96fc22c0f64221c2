"""Placement and the driver's books, without Ray: plain arithmetic on reports."""

from __future__ import annotations

import pytest

from framering.cluster.figures import StreamReport, StreamState
from framering.cluster.ledger import StreamConfig, StreamRecord
from framering.cluster.placement import (
    MEASURED_AFTER_S,
    PRIOR_NS_PER_PIXEL,
    NodeLoad,
    choose_node,
    predicted_demand,
)


def test_a_stream_goes_to_the_node_with_the_most_unreserved_worker_time() -> None:
    loads = [NodeLoad("a", 2.0, 1.5, 3), NodeLoad("b", 1.0, 0.2, 1), NodeLoad("c", 4.0, 3.9, 9)]
    assert choose_node(loads).node_id == "b"  # 0.8 free, against 0.5 and 0.1


def test_ties_go_to_fewer_streams_then_by_node_id() -> None:
    assert choose_node([NodeLoad("b", 1.0, 0.0, 0), NodeLoad("a", 1.0, 0.0, 1)]).node_id == "b"
    assert choose_node([NodeLoad("b", 1.0, 0.0, 0), NodeLoad("a", 1.0, 0.0, 0)]).node_id == "a"


def test_excluded_nodes_are_skipped_and_none_is_left_when_all_are() -> None:
    loads = [NodeLoad("a", 2.0, 0.0, 0), NodeLoad("b", 1.0, 0.0, 0)]
    assert choose_node(loads, exclude=["a"]).node_id == "b"
    assert choose_node(loads, exclude=["a", "b"]) is None
    assert choose_node([]) is None


def test_streams_opened_one_after_another_spread_over_equal_nodes() -> None:
    nodes = {"a": 0, "b": 0, "c": 0}
    demand = predicted_demand(30, 1920, 1080, None)
    for _ in range(9):
        chosen = choose_node(NodeLoad(n, 2.0, count * demand, count) for n, count in nodes.items())
        nodes[chosen.node_id] += 1
    assert nodes == {"a": 3, "b": 3, "c": 3}


def test_prediction_is_whole_frames_at_the_rate_and_the_measured_cost() -> None:
    assert predicted_demand(30, 1000, 1000, 2.0) == pytest.approx(0.06)
    assert predicted_demand(60, 1000, 1000, None) == pytest.approx(
        60 * 1e6 * PRIOR_NS_PER_PIXEL * 1e-9
    )


def _config(fps: float = 30.0) -> StreamConfig:
    return StreamConfig("s", b"", 100, 50, "rgba", fps, 1.0, 3, "drop")


def _report(first: int, delivered: int, **figures: object) -> StreamReport:
    values = dict(
        name="s",
        placement=0,
        state=StreamState.RUNNING,
        delivered=delivered,
        first_index=first,
        last_index=first + delivered - 1,
        epoch=1000.0,
        first_delivery_wall=None,
        fps=30.0,
        latency_p50=0.001,
        latency_p99=0.002,
        late=0,
        dropped=0,
        repeated=0,
        worker_seconds=0.0,
        error=None,
    )
    values.update(figures)
    return StreamReport(**values)  # type: ignore[arg-type]


def test_figures_add_up_over_placements_and_the_gap_counts_as_dropped() -> None:
    record = StreamRecord(_config())
    record.placed("a", _report(0, 0), now=1000.0)
    record.update(_report(0, 100, late=2, dropped=3))
    record.unplace(None, StreamState.WAITING)  # node a lost: its last report is what we know
    assert (record.node_id, record.state, record.last_index) == (None, StreamState.WAITING, 99)
    record.placed("b", _report(130, 0), now=1005.0)  # frames 100..129 lost in the failover
    record.update(_report(130, 50, dropped=1))
    figures = record.figures(None, now=1010.0)
    assert figures.node_id == "b"
    assert figures.delivered == 150
    assert figures.late == 2
    assert figures.dropped == 3 + 30 + 1
    assert figures.last_index == 179


def test_the_first_placement_sets_the_epoch_every_later_one_keeps() -> None:
    record = StreamRecord(_config())
    assert record.epoch is None  # its first node takes its frame 0 as now
    record.placed("a", _report(0, 0, epoch=1234.5), now=1234.5)
    assert record.epoch == 1234.5


def test_demand_is_predicted_until_measured_on_the_node() -> None:
    record = StreamRecord(_config(fps=30))
    record.placed("a", _report(0, 0), now=1000.0)
    predicted = predicted_demand(30, 100, 50, 4.0)
    assert record.demand(4.0, now=1000.5) == pytest.approx(predicted)
    record.update(_report(0, 90, worker_seconds=0.3))
    ran = MEASURED_AFTER_S + 1.0
    assert record.demand(4.0, now=1000.0 + ran) == pytest.approx(0.3 / ran)
