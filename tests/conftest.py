"""Shared fixtures: every test must leave /dev/shm without a framering segment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import kernels

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
    before = framering_segments()
    yield
    leaked = framering_segments() - before
    assert not leaked, f"test left shared-memory segments behind: {sorted(leaked)}"
