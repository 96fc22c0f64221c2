"""Two figures to read the parent's CPU per frame against, both steadier than a CPU time.

- **Python calls per frame** in the parent, every thread counted (the caller's and the
  engine's manager thread): a count, so it does not move with the machine's noise, and it is
  what "fewer Python steps per frame" means. Counted on an engine of its own, made while a
  profile function is installed for new threads (``threading.setprofile``), so that the
  manager thread is counted too.
- **A thread round trip**: the CPU two threads of this process spend handing a lock back and
  forth once, each blocking until the other wakes it. A frame crosses threads and processes a
  few times (caller -> worker -> manager -> caller), and on a virtual machine each sleep and
  wake-up costs tens of microseconds of CPU that no Python change removes.
- **Cold after a sleep**: the CPU time of one fixed piece of Python (a loop of a few hundred
  steps) run back to back, and run right after sleeping one 60 fps interval. A paced frame
  runs after such a sleep; on a virtual machine whose host gives the idle core to others, the
  same code then takes several times as long, and no change to the code's logic removes that.
"""

from __future__ import annotations

import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from framering import Engine
from framering.kernels.workloads import Workload

from .timing import paced_ticks

Scene = Callable[[int], list[Any]]


@dataclass(frozen=True)
class CallCount:
    frames: int
    python_calls: int
    c_calls: int

    @property
    def python_per_frame(self) -> float:
        return self.python_calls / self.frames

    @property
    def c_per_frame(self) -> float:
        return self.c_calls / self.frames


class _Counter:
    """A profile function that counts calls while ``on``, from any thread."""

    def __init__(self) -> None:
        self.on = False
        self.python = 0
        self.c = 0
        self._lock = threading.Lock()

    def __call__(self, frame: object, event: str, arg: object) -> None:
        if not self.on:
            return
        if event == "call":
            with self._lock:
                self.python += 1
        elif event == "c_call":
            with self._lock:
                self.c += 1


def count_calls(
    workload: Workload,
    scene_for: Callable[[Engine], Scene],
    run: Callable[[Engine, Scene, float], int],
    *,
    workers: int,
    slots: int,
    seconds: float,
) -> CallCount:
    """Calls per frame of ``run(eng, scene, seconds)`` (which returns the frames it made) on an
    engine made for the count; ``scene_for(eng)`` builds its scene."""
    counter = _Counter()
    threading.setprofile(counter)  # the manager thread starts inside Engine()
    try:
        eng = Engine(workload.width, workload.height, workers=workers, slots=slots)
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    try:
        scene = scene_for(eng)
        run(eng, scene, 0.2)  # warm: first frames upload and fill every slot
        previous = sys.getprofile()
        sys.setprofile(counter)
        counter.on = True
        try:
            frames = run(eng, scene, seconds)
        finally:
            counter.on = False
            sys.setprofile(previous)
    finally:
        eng.close()
    return CallCount(frames, counter.python, counter.c)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_round_trip_cpu(rounds: int = 5000) -> float:
    """Seconds of this process's CPU per lock round trip between two threads (each blocks
    until the other releases it)."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()

    def other() -> None:
        for _ in range(rounds):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=other, name="framering-bench-round-trip")
    thread.start()
    began = _cpu()
    for _ in range(rounds):
        ping.release()
        pong.acquire()
    spent = _cpu() - began
    thread.join()
    return spent / rounds


@dataclass(frozen=True)
class ColdWake:
    hot_s: float
    after_sleep_s: float
    sleep_s: float

    @property
    def ratio(self) -> float:
        return self.after_sleep_s / self.hot_s


def _fixed_work(steps: int) -> int:
    total = 0
    for i in range(steps):
        total += i * i
    return total


def cold_wake_cost(steps: int = 300, rounds: int = 60, sleep_s: float = 1 / 60) -> ColdWake:
    """Median thread CPU of ``_fixed_work(steps)`` back to back, and right after a sleep of
    ``sleep_s`` (one interval of a 60 fps loop)."""
    hot, cold = [], []
    _fixed_work(steps)
    for _ in range(rounds):
        began = time.thread_time_ns()
        _fixed_work(steps)
        hot.append(time.thread_time_ns() - began)
    for _ in range(rounds):
        time.sleep(sleep_s)
        began = time.thread_time_ns()
        _fixed_work(steps)
        cold.append(time.thread_time_ns() - began)
    return ColdWake(statistics.median(hot) / 1e9, statistics.median(cold) / 1e9, sleep_s)


def paced_idle_cpu(fps: float = 60.0, seconds: float = 2.0) -> float:
    """Seconds of this process's CPU per tick of a loop that sleeps to each tick of ``fps``
    exactly as the paced benchmark does, and does nothing else: the floor under every paced
    figure of the parent (on a VM a wake-up from an idle vCPU is far from free)."""
    ticks = max(1, int(seconds * fps))
    began = _cpu()
    for _ in paced_ticks(fps, ticks):
        pass
    return (_cpu() - began) / ticks
