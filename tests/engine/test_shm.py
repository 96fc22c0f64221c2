"""Shared memory: refused when /dev/shm is too small, reclaimed when its owner is killed,
never taken from a live owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from framering import Engine, SharedMemoryError, shm
from tests.waiting import wait_until


def test_too_small_dev_shm_is_refused_with_the_size_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shm, "shm_free_bytes", lambda: 64 * 2**20)  # Docker's default
    with pytest.raises(SharedMemoryError, match=r"needs 63\.3 MiB"):
        Engine(1920, 1080, slots=8, workers=1)


PARENT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from framering import Engine, Layer

    if __name__ == "__main__":
        eng = Engine(64, 64, slots=2, workers=2)
        source = eng.upload(np.zeros((8, 8, 4), np.uint8))
        eng.render([Layer(source)])
        from framering.shm import list_segments
        print(json.dumps({"workers": eng.worker_pids(), "segments": list_segments()}), flush=True)
        time.sleep(600)
    """
)


def test_workers_exit_when_the_parent_is_killed_and_segments_are_reclaimed(
    tmp_path: Path,
) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    try:
        line = parent.stdout.readline() if parent.stdout else b""
        state = json.loads(line)
        ours = [name for name in state["segments"] if shm.owner_pid(name) == parent.pid]
        assert len(ours) == 2  # the ring and the source
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_until(
            lambda: not any(shm.pid_alive(pid) for pid in state["workers"]),
            "gone: workers outlived their parent",
            timeout=5,
        )
    finally:
        if parent.poll() is None:
            parent.kill()
    # Python's resource tracker may already have unlinked them; if not, a new engine does
    with Engine(16, 16, slots=1, workers=1):
        left = set(shm.list_segments()) & set(ours)
    assert not left, f"not reclaimed: {left}"


def test_cleanup_never_touches_a_live_owners_segment() -> None:
    with Engine(16, 16, slots=1, workers=1) as eng:
        (name,) = [n for n in shm.list_segments() if eng.token in n and n.endswith("-ring")]
        assert name not in shm.orphaned_segments()
        shm.reclaim_orphans()
        assert name in shm.list_segments()
