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


SMALL_SHM = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from framering import Engine, Layer, SharedMemoryError, shm

    if __name__ == "__main__":
        if sys.argv[1] == "no-check":  # only the reservation stands between us and SIGBUS
            shm.check_capacity = lambda size, what: None
        refused = []
        with Engine(1920, 1080, slots=1, workers=1) as eng:
            camera = eng.live_source(1280, 720, buffers=2)
            try:
                eng.live_source(1280, 720, buffers=2)
            except SharedMemoryError as error:
                refused.append(str(error))
            try:
                eng.upload(np.zeros((1080, 1920, 4), np.uint8))
            except SharedMemoryError as error:
                refused.append(str(error))
            try:
                eng.transform(camera, size=(1920, 1080))
            except SharedMemoryError as error:
                refused.append(str(error))
            for _ in range(3):  # every page of what was created is really there
                with camera.write() as pixels:
                    pixels[...] = 255
            frame = eng.render([Layer(camera)])
        print(json.dumps({"refused": refused, "pixel": int(frame[0, 0, 0])}), flush=True)
    """
)


def private_tmpfs_available() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /dev/shm"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@pytest.mark.parametrize("check", ["check", "no-check"])
def test_a_full_dev_shm_refuses_every_new_segment_and_never_raises_sigbus(
    tmp_path: Path, check: str
) -> None:
    if not private_tmpfs_available():
        pytest.skip("needs `unshare -m` and mount permission for a private 20 MiB /dev/shm")
    script = tmp_path / "small_shm.py"
    script.write_text(SMALL_SHM)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = f"mount -t tmpfs -o size=20m tmpfs /dev/shm && exec {sys.executable} {script} {check}"
    run = subprocess.run(
        ["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, f"exit {run.returncode} (135 is SIGBUS): {run.stderr[-2000:]}"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(result["refused"]) == 3, result  # a live source, an upload, a transform target
    assert all("/dev/shm" in text for text in result["refused"])
    assert result["pixel"] == 255


def test_the_sweep_skips_a_segment_of_another_user(tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("making a file of another user needs root")
    fake = Path(shm.SHM_DIR) / "framering-999999-deadbeef-ring"
    fake.write_bytes(b"")
    try:
        os.chown(fake, 65534, 65534)  # nobody: a planted file, or another user's engine
        assert fake.name not in shm.reclaim_orphans()
        assert fake.exists()
        with Engine(16, 16, slots=1, workers=1):  # the sweep at start-up is not fatal either
            pass
        assert fake.exists()
    finally:
        fake.unlink()


def test_the_sweep_leaves_a_segment_whose_owner_holds_its_lock() -> None:
    # An owner in another PID namespace: its pid means nothing here, but it holds the lock.
    segment = shm.CreatedSegment.create("framering-999998-0badcafe-ring", 4096, "a probe")
    try:
        assert not shm.pid_alive(999998)
        assert segment.name not in shm.reclaim_orphans()
        assert segment.name in shm.list_segments()
    finally:
        segment.close_and_unlink()
    planted = Path(shm.SHM_DIR) / "framering-999997-0badcafe-ring"
    planted.write_bytes(b"")  # nobody holds its lock and its pid is gone: an orphan
    assert planted.name in shm.reclaim_orphans()
    assert not planted.exists()
