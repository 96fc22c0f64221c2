"""The operating system's scheduling policy of a worker process: ``SCHED_BATCH`` by default.

Why: a worker sleeps on its pipe between tasks, so to Linux's fair scheduler it is a task that
has used little CPU, and when the parent's write wakes it, it preempts whatever runs on that
CPU, usually the parent itself, halfway through its frame. The parent then finishes its
submit (the second band's write, the bookkeeping) only after the worker's time slice, and
pays for caches and a context switch it did not need. A ``SCHED_BATCH`` task is scheduled
exactly as fairly, at the same nice level, but never preempts on wake-up: it runs at once on
an idle CPU, else at the next scheduling point. Workers are throughput tasks fed by one
latency-critical thread, which is the case the policy exists for.

Measured on the 2-vCPU AMD EPYC (Zen 5) VM, alternating the policy in one sitting
(docs/performance.md): ``bench --streams`` held 20 paced streams in two runs against 12 and 8,
stress-4k bands / frame latency 0.63x-0.66x against 0.68x-0.72x; the animated studio 4-8%
more frames a second with 5-10% less parent CPU a frame (Linux: "batch and idle tasks do
not preempt non-idle tasks", kernel/sched/fair.c, on every wake-up check).

``FRAMERING_WORKER_POLICY=normal`` keeps the ordinary policy (``batch``: the default). Where
the platform has no ``SCHED_BATCH``, workers keep what they have.
"""

from __future__ import annotations

import os
from typing import Final

from framering.errors import InvalidValueError

ENVIRONMENT: Final = "FRAMERING_WORKER_POLICY"
SETTINGS: Final = ("batch", "normal")


def wanted_policy(setting: str) -> str:
    """``batch`` or ``normal`` from the environment variable's value (empty: the default)."""
    value = setting.strip().lower() or "batch"
    if value not in SETTINGS:
        raise InvalidValueError(f"{ENVIRONMENT} must be batch or normal, not {setting!r}")
    return value


def policy_from_environment() -> str:
    """The policy this process's environment asks for (raises on a bad value): the engine
    calls it before starting workers, so that the error is its own and not theirs."""
    return wanted_policy(os.environ.get(ENVIRONMENT, ""))


def apply_worker_policy() -> None:
    """Give the calling process the policy the environment asks for (a worker, at start)."""
    if policy_from_environment() != "batch":
        return
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None:
        return  # not Linux: nothing to choose
    os.sched_setscheduler(0, batch, os.sched_param(0))
