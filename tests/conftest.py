"""Shared fixtures: every test must leave /dev/shm without a framering segment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from framering import kernels, shm

SHM_DIR = "/dev/shm"


def framering_segments() -> set[str]:
    """Names of the project's shared-memory segments currently in /dev/shm."""
    if not os.path.isdir(SHM_DIR):
        return set()
    return {name for name in os.listdir(SHM_DIR) if name.lower().startswith("framering")}


def pytest_sessionstart(session: pytest.Session) -> None:
    # compile once, up front, so no single test pays (and times out on) the JIT
    kernels.warmup()


@pytest.fixture(autouse=True)
def no_leaked_segments() -> Iterator[None]:
    """After every test, no new segment of this process, nor an orphan, is left in /dev/shm.

    Segments of other live processes (another test run, a demo in another terminal) are
    theirs, not leaks of this test.
    """
    before = framering_segments()
    yield
    ours_or_orphaned = {
        name
        for name in framering_segments() - before
        if shm.owner_pid(name) == os.getpid() or not shm.pid_alive(shm.owner_pid(name) or 0)
    }
    assert not ours_or_orphaned, f"test left segments behind: {sorted(ours_or_orphaned)}"
