"""Workers run under SCHED_BATCH (their wake-ups never preempt the parent) unless told not to,
and a bad setting is refused before any worker starts."""

from __future__ import annotations

import os

import pytest

from framering import Engine
from framering.worker_policy import ENVIRONMENT, wanted_policy

linux_only = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="no SCHED_BATCH here")


@linux_only
def test_workers_run_as_batch_tasks_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    with Engine(32, 16, workers=1, slots=2) as eng:
        (pid,) = eng.worker_pids()
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the parent keeps its own


@linux_only
def test_normal_keeps_workers_under_the_ordinary_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT, "normal")
    with Engine(32, 16, workers=1, slots=2) as eng:
        (pid,) = eng.worker_pids()
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER


def test_a_bad_policy_is_refused_before_workers_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENVIRONMENT, "realtime")
    with pytest.raises(ValueError, match="FRAMERING_WORKER_POLICY must be batch or normal"):
        Engine(32, 16, workers=1, slots=2)


def test_the_setting_reads_case_and_spaces_loosely() -> None:
    assert wanted_policy("") == "batch"
    assert wanted_policy(" Normal ") == "normal"
    assert wanted_policy("BATCH") == "batch"
