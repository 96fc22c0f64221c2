"""Waiting on a condition instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable

# Long enough for a loaded 2-core CI runner; a passing test returns as soon as it holds.
PATIENCE_S = 30.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = PATIENCE_S) -> None:
    """Return once ``condition()`` is true; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout} s")
        time.sleep(0.01)
