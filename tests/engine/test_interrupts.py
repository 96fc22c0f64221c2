"""Ctrl-C at the worst moments, and os.fork(): the engine and its pool agree on every task's
fate, nothing started outlives an interrupted start, and a close finishes however it is left."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import psutil
import pytest

from framering import (
    Engine,
    EngineClosedError,
    FrameFailedError,
    Layer,
    SlotStateError,
    protocol,
    shm,
)
from framering import scheduler as scheduler_module
from framering.frames import FrameTable
from framering.jobs import LiveJobs
from framering.pool import WorkerPool
from framering.tasks import RenderTask
from framering.workers import WorkerHandle
from tests.interrupting import InterruptAtLine
from tests.waiting import wait_until

W, H = 64, 36


def solid(eng: Engine, red: int, green: int) -> object:
    pixels = np.zeros((H, W, 4), np.uint8)
    pixels[...] = (red, green, 0, 255)
    return eng.upload(pixels, opaque=True)


def worker_processes() -> list[psutil.Process]:
    """Spawned framering workers that are children of this process."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


def test_an_interrupt_after_a_render_reached_its_worker_leaves_the_frame_to_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Engine(W, H, slots=2, workers=1) as eng:
        red, green = solid(eng, 255, 0), solid(eng, 0, 255)
        send = Connection.send_bytes
        nothing = np.zeros((0, 4))
        render = protocol.encode_render(0, 0, 0, True, nothing, np.zeros(0, protocol.LAYER_RECORD))
        fired: list[bool] = []

        def send_then_interrupt(conn: Connection, data: bytes, *args: object) -> None:
            send(conn, data, *args)  # the worker has the task now
            caller = threading.current_thread() is threading.main_thread()
            if caller and not fired and bytes(data[:4]) == render[:4]:
                fired.append(True)
                raise KeyboardInterrupt  # the signal lands just after the pipe write

        monkeypatch.setattr(Connection, "send_bytes", send_then_interrupt)
        slot = eng.acquire(timeout=10)
        with pytest.raises(KeyboardInterrupt):
            slot.submit([Layer(red)])
        monkeypatch.undo()
        assert fired
        frame = slot.wait(timeout=30)  # the frame the worker made, not a failure
        assert (frame[..., 0] == 255).all()
        slot.release()
        held = [eng.acquire(timeout=10) for _ in range(eng.slots)]  # the red slot again
        for reused in held:
            reused.submit([Layer(green)])
        views = [reused.wait(timeout=30) for reused in held]
        wait_until(lambda: eng.metrics().pending_tasks == 0, "idle")
        assert all((view[..., 1] == 255).all() and (view[..., 0] == 0).all() for view in views)
        metrics = eng.metrics()
        assert metrics.frames_failed == 0 and metrics.retries == 0
        for reused in held:
            reused.release()


def test_an_interrupt_before_a_render_is_written_gives_the_task_back_and_kills_no_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """^C while the RENDER is being encoded: the task never reached the pipe, so it must not
    stay in the worker's hands (where only the deadline would end it, by killing the worker)."""
    with Engine(W, H, slots=2, workers=1, deadline=1.0) as eng:
        red = solid(eng, 255, 0)
        encode = RenderTask.encode
        fired: list[bool] = []

        def interrupted_encode(task: RenderTask) -> bytes:
            if threading.current_thread() is threading.main_thread() and not fired:
                fired.append(True)
                raise KeyboardInterrupt  # as if ^C landed while the message was built
            return encode(task)

        monkeypatch.setattr(RenderTask, "encode", interrupted_encode)
        pid = eng.worker_pids()
        slot = eng.acquire(timeout=10)
        with pytest.raises(KeyboardInterrupt):
            slot.submit([Layer(red)])
        monkeypatch.undo()
        assert fired
        with pytest.raises(FrameFailedError):  # an interrupted submit ends its frame at once
            slot.wait(timeout=0.5)
        slot.release()
        time.sleep(1.5)  # past the deadline the task would have held its worker to
        assert (eng.render([Layer(red)])[..., 0] == 255).all()
        assert eng.worker_pids() == pid and eng.metrics().worker_restarts == 0


def test_an_interrupt_at_any_line_of_the_pools_queueing_leaves_every_frame_to_end() -> None:
    """^C on each line the scheduler runs in one submit, in turn, with frames of a second
    stream queued before it: the interrupted frame ends (done or failed), every other frame
    is delivered, no worker is killed, and the engine keeps working."""
    with Engine(W, H, slots=8, workers=1) as eng:
        red, green = solid(eng, 255, 0), solid(eng, 0, 255)
        other = eng.open_stream("other")
        points = 0
        for n in range(1, 200):
            queued = [other.acquire(timeout=10) for _ in range(3)]
            for slot in queued:
                slot.submit([Layer(green)])
            slot = eng.acquire(timeout=10)
            with InterruptAtLine(scheduler_module, n) as interrupt:
                try:
                    slot.submit([Layer(red)])
                except KeyboardInterrupt:
                    pass
            try:
                assert (slot.wait(timeout=30)[..., 0] == 255).all()
            except (FrameFailedError, SlotStateError):
                assert interrupt.fired  # an interrupted submit ends its frame, or never began
            slot.release()
            for earlier in queued:
                assert (earlier.wait(timeout=30)[..., 1] == 255).all(), n
                earlier.release()
            if not interrupt.fired:
                break
            points += 1
        assert points > 5
        assert (eng.render([Layer(red)])[..., 0] == 255).all()
        assert eng.metrics().worker_restarts == 0


def test_an_interrupted_start_leaves_no_manager_thread_and_no_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spawn = WorkerHandle.spawn
    spawned: list[WorkerHandle] = []

    def spawn_then_interrupt(*args: object, **kwargs: object) -> WorkerHandle:
        if spawned:
            raise KeyboardInterrupt  # Ctrl-C while the second worker starts
        spawned.append(spawn(*args, **kwargs))  # type: ignore[arg-type]
        return spawned[-1]

    monkeypatch.setattr(WorkerHandle, "spawn", spawn_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        Engine(W, H, slots=2, workers=2)
    assert spawned
    assert not [t for t in threading.enumerate() if t.name == "framering-manager"]
    assert spawned[0].released  # it exited, and its pipe and process handle are closed
    wait_until(lambda: not worker_processes(), "gone: a worker outlived the start")


def test_an_interrupted_close_unlinks_everything_and_the_next_close_stops_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    eng = Engine(W, H, slots=2, workers=1)
    solid(eng, 1, 2)
    pids = eng.worker_pids()

    def interrupted(pool: WorkerPool) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(WorkerPool, "stop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        eng.close()
    assert not [name for name in shm.list_segments() if eng.token in name]
    monkeypatch.undo()
    eng.close()  # finishes the job
    wait_until(lambda: not any(shm.pid_alive(pid) for pid in pids), "stopped")
    eng.close()  # and then does nothing


FORK = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from framering import Engine, ForeignProcessError, Layer

    if __name__ == "__main__":
        eng = Engine(32, 16, slots=2, workers=1)
        red = eng.upload(np.full((16, 32, 4), 255, np.uint8))
        workers = eng.worker_pids()
        child = os.fork()
        if child == 0:
            try:
                eng.render([Layer(red)])
                code = 3
            except ForeignProcessError:
                code = 0
            sys.exit(code)  # atexit runs here: it must not touch the parent's workers
        _, status = os.waitpid(child, 0)
        frame = eng.render([Layer(red)])
        result = {
            "child": os.waitstatus_to_exitcode(status),
            "pixel": int(frame[0, 0, 0]),
            "same_workers": eng.worker_pids() == workers,
            "restarts": eng.metrics().worker_restarts,
        }
        eng.close()
        print(json.dumps(result), flush=True)
    """
)


def test_a_forked_child_cannot_use_the_engine_and_leaves_the_parents_workers_alone(
    tmp_path: Path,
) -> None:
    script = tmp_path / "fork.py"
    script.write_text(FORK)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Error" not in run.stderr, run.stderr[-2000:]  # no AssertionError at the child's exit
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"child": 0, "pixel": 255, "same_workers": True, "restarts": 0}


NEVER_CLOSED = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from framering import Engine, Layer

    if __name__ == "__main__":
        eng = Engine(32, 16, slots=2, workers=2)
        red = eng.upload(np.full((16, 32, 4), 255, np.uint8))
        eng.render([Layer(red)])
        print(json.dumps({"token": eng.token, "workers": eng.worker_pids()}), flush=True)
        if sys.argv[1] == "raise":
            raise RuntimeError("the caller's own bug")
    """
)


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_an_engine_never_closed_is_closed_at_exit_before_its_workers_are_terminated(
    tmp_path: Path, ending: str
) -> None:
    """multiprocessing terminates its children at exit; if that came first, the pool would
    see its workers die and start replacements while the interpreter shuts down."""
    script = tmp_path / "never_closed.py"
    script.write_text(NEVER_CLOSED)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    run = subprocess.run(
        [sys.executable, str(script), ending], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == (1 if ending == "raise" else 0), run.stderr[-2000:]
    assert "killed by" not in run.stderr, run.stderr[-2000:]
    assert "replacement" not in run.stderr, run.stderr[-2000:]
    assert "Exception ignored" not in run.stderr, run.stderr[-2000:]
    started = json.loads(run.stdout.strip().splitlines()[-1])
    assert not [name for name in shm.list_segments() if started["token"] in name]
    wait_until(lambda: not any(shm.pid_alive(pid) for pid in started["workers"]), "stopped")


def test_an_interrupt_before_the_frame_table_lets_go_of_every_pin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Engine(W, H, slots=2, workers=1) as eng:
        red = solid(eng, 255, 0)
        slot = eng.acquire(timeout=10)

        def interrupted(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt  # Ctrl-C just as the frame would be recorded

        monkeypatch.setattr(FrameTable, "begin", interrupted)
        with pytest.raises(KeyboardInterrupt):
            slot.submit([Layer(red)])
        monkeypatch.undo()
        assert slot.state.name == "ACQUIRED"  # nothing was submitted
        slot.release()
        assert eng.metrics().ring_in_use == 0
        eng.free(red, timeout=0)  # no pin left behind
        assert eng.metrics().frames_failed == 0  # an interrupted submit is no failed frame


def test_a_submit_racing_a_close_is_refused_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    eng = Engine(W, H, slots=2, workers=1)
    red = solid(eng, 255, 0)
    slot = eng.acquire(timeout=10)
    add = LiveJobs.add

    def close_first(jobs: LiveJobs, job: object) -> None:
        eng.close()  # another thread's close wins the race here
        add(jobs, job)  # type: ignore[arg-type]

    monkeypatch.setattr(LiveJobs, "add", close_first)
    with pytest.raises(EngineClosedError):
        slot.submit([Layer(red)])


def test_asyncio_waiters_see_the_engine_closed_not_cancelled() -> None:
    async def main() -> BaseException:
        eng = Engine(W, H, slots=1, workers=1)
        held = await eng.acquire_async()
        waiter = asyncio.ensure_future(eng.acquire_async(timeout=30))
        await asyncio.sleep(0.05)  # the waiter is parked on the bridge
        eng.close()  # from the loop's own thread
        try:
            await waiter
        except BaseException as error:
            return error
        finally:
            del held
        raise AssertionError("the waiter got a slot from a closed engine")

    assert isinstance(asyncio.run(main()), EngineClosedError)


def test_a_scene_that_raises_gives_its_slot_back() -> None:
    with Engine(W, H, slots=3, workers=1) as eng:

        def broken(t: float, index: int) -> list[Layer]:
            raise ValueError("no layers today")

        with pytest.raises(ValueError, match="no layers today"):
            next(iter(eng.stream(broken, fps=60, frames=5)))
        assert eng.metrics().ring_in_use == 0


def test_an_interrupt_while_a_still_frame_lets_go_of_its_pins_lets_go_of_each_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frame with nothing changed ends inside submit() and unpins there: ^C in the middle
    must not unpin a source twice (its pins would never add up to zero again)."""
    with Engine(W, H, slots=1, workers=1) as eng:
        red, green = solid(eng, 255, 0), solid(eng, 0, 255)
        layers = [Layer(red), Layer(green, x=4)]
        eng.render(layers)
        unpin = type(green).unpin
        fired: list[bool] = []

        def unpin_then_interrupt(source: object, buffer: int) -> None:
            unpin(source, buffer)  # type: ignore[arg-type]
            if source is green and not fired:
                fired.append(True)
                raise KeyboardInterrupt  # as if ^C landed right after this unpin

        monkeypatch.setattr(type(green), "unpin", unpin_then_interrupt)
        with eng.acquire() as slot, pytest.raises(KeyboardInterrupt):
            slot.submit(layers)  # unchanged: done in submit(), then its pins let go
        assert fired
        monkeypatch.undo()
        eng.free(red, timeout=1)  # every pin let go exactly once: nothing reads them
        eng.free(green, timeout=1)
