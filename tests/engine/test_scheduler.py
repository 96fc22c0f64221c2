"""The pool's dispatch policy on its own: retries first, then ticks earliest first, then the
rest shared by weight in measured worker time (no processes: workers are stand-ins)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from framering import scheduler as scheduler_module
from framering.scheduler import (
    MAX_PACKED_PER_WORKER,
    MAX_QUEUED_PER_WORKER,
    PACK_QUEUED_NS,
    PACK_TASK_NS,
    FairScheduler,
    Flow,
)
from framering.tasks import Task
from framering.workers import WorkerState
from tests.interrupting import InterruptAtLine
from tests.listeners import IgnoringListener


@dataclass(eq=False)
class StandInWorker:
    state: WorkerState = WorkerState.READY
    inflight: dict[int, Task] = field(default_factory=dict)
    head_since: float = 0.0


_ids = iter(range(1, 10**9))


def task(flow: Flow | None = None, tick: float | None = None) -> Task:
    return Task(id=next(_ids), deadline_s=5.0, listener=IgnoringListener(), flow=flow, tick=tick)


def dispatch_one(scheduler: FairScheduler) -> Task:
    """The next task the scheduler hands out, as ``assign`` does."""
    chosen = scheduler.pop_next()
    chosen.attempts += 1
    return chosen


def test_paced_frames_go_earliest_tick_first_and_before_unpaced_work() -> None:
    scheduler = FairScheduler(max_attempts=2)
    greedy = Flow("greedy", 100.0)
    unpaced = [task(greedy) for _ in range(3)]
    paced = [task(Flow(f"live-{i}", 1.0), tick=t) for i, t in enumerate([3.0, 1.0, 2.0])]
    for t in unpaced[:2] + paced + unpaced[2:]:
        scheduler.add(t)
    order = [dispatch_one(scheduler) for _ in range(6)]
    assert [t.tick for t in order[:3]] == [1.0, 2.0, 3.0]
    assert order[3:] == unpaced


def test_retries_go_before_everything() -> None:
    scheduler = FairScheduler(max_attempts=3)
    scheduler.add(task(tick=1.0))
    retried = task()
    retried.attempts = 1
    assert scheduler.retry(retried, closing=False)
    assert dispatch_one(scheduler) is retried


def test_a_task_out_of_attempts_or_closing_is_not_retried() -> None:
    scheduler = FairScheduler(max_attempts=2)
    spent = task()
    spent.attempts = 2
    assert not scheduler.retry(spent, closing=False)
    assert not scheduler.retry(task(), closing=True)
    assert len(scheduler) == 0


def test_a_worker_is_given_at_most_its_queue_depth() -> None:
    scheduler = FairScheduler(max_attempts=2)
    for _ in range(5):
        scheduler.add(task())
    worker = StandInWorker()
    sends = scheduler.assign([worker])
    assert len(sends) == MAX_QUEUED_PER_WORKER
    assert len(scheduler) == 5 - MAX_QUEUED_PER_WORKER


def test_while_paced_frames_come_unpaced_work_waits_for_an_idle_worker() -> None:
    """A paced frame then never waits behind a second task queued in a worker's pipe."""
    scheduler = FairScheduler(max_attempts=2)
    for _ in range(4):
        scheduler.add(task())
    busy, idle = StandInWorker(inflight={0: task()}), StandInWorker()
    assert len(scheduler.assign([busy])) == 1  # no paced frame yet: the pipe is filled
    scheduler.add(task(tick=1.0))
    assert [t.tick for _, t in scheduler.assign([busy])] == []  # full now
    sends = scheduler.assign([idle])
    assert [t.tick for _, t in sends] == [1.0]  # the paced frame, and nothing queued behind it
    assert len(idle.inflight) == 1 and len(scheduler) == 3


@dataclass(eq=False, kw_only=True)
class SizedTask(Task):
    """A task of a known number of output pixels (what its cost is estimated from)."""

    size: int

    @property
    def pixels(self) -> int:
        return self.size


def sized(flow: Flow, ns: float, *, spread: bool = False) -> SizedTask:
    """A task ``flow`` expects to take ``ns`` of worker time."""
    return SizedTask(
        id=next(_ids),
        deadline_s=5.0,
        listener=IgnoringListener(),
        flow=flow,
        size=round(ns / flow.ns_per_pixel),
        spread=spread,
    )


def test_short_unpaced_tasks_join_a_busy_worker_before_an_idle_one_is_woken() -> None:
    scheduler = FairScheduler(max_attempts=2)
    flow = Flow("loop", 1.0)
    short = PACK_QUEUED_NS / 10
    busy = StandInWorker(inflight={0: sized(flow, short)})
    idle = StandInWorker()
    for _ in range(4):
        scheduler.add(sized(flow, short))
    sends = scheduler.assign([idle, busy])
    held = len(sends) - (MAX_PACKED_PER_WORKER - 1)
    assert [w for w, _ in sends[: MAX_PACKED_PER_WORKER - 1]] == [busy, busy]
    assert len(busy.inflight) == MAX_PACKED_PER_WORKER  # then it is full
    assert [w for w, _ in sends[MAX_PACKED_PER_WORKER - 1 :]] == [idle] * held
    assert held == 2  # the idle worker takes the rest, up to its queue depth


def test_an_idle_worker_is_woken_for_a_task_behind_long_queued_work() -> None:
    scheduler = FairScheduler(max_attempts=2)
    flow = Flow("4k", 1.0)
    busy = StandInWorker(inflight={0: sized(flow, 2 * PACK_QUEUED_NS)})
    idle = StandInWorker()
    scheduler.add(sized(flow, PACK_QUEUED_NS / 10))
    assert [w for w, _ in scheduler.assign([busy, idle])] == [idle]


def test_a_long_task_wakes_the_idle_worker_however_short_the_queue() -> None:
    scheduler = FairScheduler(max_attempts=2)
    flow = Flow("4k", 1.0)
    busy = StandInWorker(inflight={0: sized(flow, PACK_QUEUED_NS / 10)})
    idle = StandInWorker()
    scheduler.add(sized(flow, 2 * PACK_TASK_NS))
    assert [w for w, _ in scheduler.assign([busy, idle])] == [idle]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0, 1]), st.booleans()), min_size=1, max_size=24),
    st.floats(0.25, 4.0),
)
def test_each_task_is_placed_by_its_own_cost_under_weighted_round_robin(
    tasks: list[tuple[int, bool]], weight: float
) -> None:
    """While an idle worker is left, a short task joins a busy one and a long one takes the
    idle one: the task placed is the task taken, whichever flow the round robin serves."""
    scheduler = FairScheduler(max_attempts=2)
    flows = [Flow("a", 1.0), Flow("b", weight)]
    short, long = PACK_QUEUED_NS / 10, 2 * PACK_QUEUED_NS
    for index, is_short in tasks:
        scheduler.add(sized(flows[index], short if is_short else long))
    while len(scheduler):
        busy = StandInWorker(inflight={0: sized(flows[0], short)})
        idle = StandInWorker()
        sends = scheduler.assign([busy, idle])
        assert sends
        held = {id(busy): 1, id(idle): 0}  # replayed in the order the tasks were placed
        for worker, placed in sends:
            cost = placed.flow.estimate_ns(placed.pixels)  # type: ignore[union-attr]
            if held[id(idle)] == 0:  # an idle worker was left when this one was placed
                packs = cost <= PACK_TASK_NS and held[id(busy)] < MAX_PACKED_PER_WORKER
                assert worker is (busy if packs else idle), (cost, held)
            held[id(worker)] += 1
            scheduler.charge(placed, round(cost))  # as estimated: the estimates stay put


def test_paced_frames_retries_and_bands_are_never_queued_behind_a_busy_worker() -> None:
    flow = Flow("loop", 1.0)
    short = PACK_QUEUED_NS / 10
    band = sized(flow, short, spread=True)
    paced = sized(flow, short)
    paced.tick = 1.0
    retried = sized(flow, short)
    retried.attempts = 1
    for chosen in (band, paced, retried):
        scheduler = FairScheduler(max_attempts=3)
        if chosen is retried:
            assert scheduler.retry(retried, closing=False)
        else:
            scheduler.add(chosen)
        busy = StandInWorker(inflight={0: sized(flow, short)})
        idle = StandInWorker()
        assert scheduler.assign([busy, idle]) == [(idle, chosen)]


def test_without_an_idle_worker_the_least_loaded_one_gets_the_task() -> None:
    """Packing only ever replaces waking an idle worker: it never unbalances busy ones."""
    scheduler = FairScheduler(max_attempts=2)
    flow = Flow("loop", 1.0)
    short = PACK_QUEUED_NS / 10
    fuller = StandInWorker(inflight={0: sized(flow, short), 1: sized(flow, short)})
    emptier = StandInWorker(inflight={2: sized(flow, short)})
    scheduler.add(sized(flow, short))
    assert [w for w, _ in scheduler.assign([fuller, emptier])] == [emptier]


def run_busy(scheduler: FairScheduler, flows: dict[Flow, int], tasks: int) -> dict[Flow, int]:
    """Keep every flow backlogged, dispatch ``tasks`` tasks one worker at a time, and charge
    each its flow's cost in ns; returns the worker time each flow got."""
    for flow in flows:
        for _ in range(4):
            scheduler.add(task(flow))
    used = dict.fromkeys(flows, 0)
    for _ in range(tasks):
        chosen = dispatch_one(scheduler)
        flow = chosen.flow
        assert flow is not None
        used[flow] += flows[flow]
        scheduler.charge(chosen, flows[flow])
        scheduler.add(task(flow))  # a greedy stream submits again at once
    return used


def test_busy_flows_share_worker_time_by_weight() -> None:
    scheduler = FairScheduler(max_attempts=2)
    flows = {Flow("a", 1.0): 3_000_000, Flow("b", 2.0): 3_000_000, Flow("c", 4.0): 3_000_000}
    used = run_busy(scheduler, flows, 3000)
    total = sum(used.values())
    for flow, ns in used.items():
        assert abs(ns / total - flow.weight / 7) < 0.01, (flow, ns / total)


def test_the_share_is_of_worker_time_not_of_frames() -> None:
    """A stream whose frames cost 5x gets 5x fewer of them at equal weight."""
    scheduler = FairScheduler(max_attempts=2)
    cheap, dear = Flow("cheap", 1.0), Flow("dear", 1.0)
    used = run_busy(scheduler, {cheap: 1_000_000, dear: 5_000_000}, 3000)
    assert abs(used[cheap] / used[dear] - 1.0) < 0.02


def test_an_idle_flow_does_not_save_up_credit() -> None:
    """A flow that was idle while others worked does not then run alone for as long."""
    scheduler = FairScheduler(max_attempts=2)
    busy, late = Flow("busy", 1.0), Flow("late", 1.0)
    run_busy(scheduler, {busy: 2_000_000}, 200)
    for _ in range(8):
        scheduler.add(task(late))
    order = [dispatch_one(scheduler).flow for _ in range(8)]
    assert order.count(busy) >= 3  # the two alternate from the start


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=60))
def test_every_task_added_comes_out_exactly_once(operations: list[tuple[int, int]]) -> None:
    """Adds (to one of three flows, paced or not, or the default flow), retries, removals and
    dispatches in any order: the count stays right and nothing is lost or duplicated."""
    scheduler = FairScheduler(max_attempts=100)
    flows = [Flow(str(i), float(i + 1)) for i in range(3)]
    waiting: list[Task] = []
    out: list[Task] = []
    for kind, which in operations:
        if kind == 0:
            new = task(flows[which] if which < 3 else None)
            scheduler.add(new)
            waiting.append(new)
        elif kind == 1:
            new = task(flows[which % 3], tick=float(which))
            scheduler.add(new)
            waiting.append(new)
        elif kind == 2 and waiting:
            victim = waiting.pop(which % len(waiting))
            assert scheduler.remove(victim)
        elif kind == 3 and waiting:
            chosen = dispatch_one(scheduler)
            waiting.remove(chosen)
            out.append(chosen)
        elif kind == 4 and out:
            again = out.pop()
            assert scheduler.retry(again, closing=False)
            waiting.append(again)
        assert len(scheduler) == len(waiting)
    assert sorted(t.id for t in scheduler.take_all()) == sorted(t.id for t in waiting)
    assert len(scheduler) == 0


def test_credit_rounding_never_stalls_the_round_robin() -> None:
    """A weight whose quantum is inexact can leave a flow at exactly 0 after the credit that
    should have made it positive; the scheduler credits again instead of spinning."""
    scheduler = FairScheduler(max_attempts=2)
    flow = Flow("odd", 0.7)
    flow.deficit_ns = -58799999.99999999
    scheduler.add(task(flow))
    assert dispatch_one(scheduler).flow is flow


def test_pressure_names_a_paced_frame_that_cannot_make_its_tick_and_work_that_waited() -> None:
    """What makes an elastic pool grow."""
    scheduler = FairScheduler(max_attempts=2)
    assert scheduler.pressure(now=100.0, wait_limit=0.1) is None
    live = Flow("live", 1.0)
    scheduler.add(task(live, tick=100.0005))  # due in 0.5 ms; a task is guessed at 2 ms
    reason = scheduler.pressure(now=100.0, wait_limit=0.1)
    assert reason is not None and "paced frame of stream 'live'" in reason
    scheduler.pop_next()
    waiting = task(Flow("batch", 1.0))
    scheduler.add(waiting)
    submitted = waiting.submitted_ns / 1e9
    assert scheduler.pressure(now=submitted + 0.05, wait_limit=0.1) is None
    reason = scheduler.pressure(now=submitted + 0.2, wait_limit=0.1)
    assert reason is not None and "waited 200 ms" in reason


def test_an_interrupt_at_any_line_of_queueing_and_assigning_loses_no_task() -> None:
    """Queued tasks of other frames (paced and not) and a new one; ^C anywhere in ``add`` and
    ``assign``, then ``take_back`` of what assign listed: every task is in its worker's hands
    or queued, exactly once, the queue still hands everything out, and no attempt was lost."""
    points = 0
    for n in range(1, 500):
        scheduler = FairScheduler(max_attempts=2)
        worker = StandInWorker()
        earlier = [task(Flow("other", 1.0)), task(tick=1.0), task()]
        for queued in earlier:
            scheduler.add(queued)
        new = task(Flow("new", 2.0))
        sends: list[tuple[StandInWorker, Task]] = []
        with InterruptAtLine(scheduler_module, n) as interrupt:
            try:
                scheduler.add(new)
                scheduler.assign([worker], sends)  # type: ignore[list-item]
            except KeyboardInterrupt:
                pass
        if not interrupt.fired:
            break
        points += 1
        scheduler.take_back(sends)  # type: ignore[arg-type]
        in_hand = list(worker.inflight.values())
        drained = []
        while len(scheduler):  # the queue still hands out what it counts
            drained.append(scheduler.pop_next())
        out = [t.id for t in in_hand + drained]
        assert len(out) == len(set(out)), n  # nothing twice
        assert all(t.id in out for t in earlier), n  # nothing of other frames lost
        if new.id not in out:  # interrupted before it was queued: then it is not hidden there
            assert not scheduler.remove(new), n
        assert all(t.attempts == 1 for t in in_hand)
        assert all(t.attempts in (0, 1) for t in drained)
    assert points > 20  # every line of add and assign was a landing place
