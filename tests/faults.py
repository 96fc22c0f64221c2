"""Fault injection for the crash tests, installed in workers through ``Engine(initializer=)``.

``install(kind, marker_dir, scope)`` replaces the worker's compositing call with one that fails
in the way ``kind`` says. ``scope="once"`` fails only the first frame that any worker of the
engine renders (a marker file created with O_EXCL decides), so the retry must succeed;
``scope="marked"`` fails every frame that has a layer at opacity :data:`MARK`, so that frame
fails every attempt while other frames keep working (``"marked-once"``: only the first attempt
of the first such frame); ``kind="startup"`` kills the worker while
it starts, once per marker (``scope="once"``) or always (``scope="always"``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

import framering.worker

MARK = 0.123456  # opacity that marks a frame for scope="marked"


def _claim(marker_dir: str) -> bool:
    try:
        os.close(os.open(os.path.join(marker_dir, "fired"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def fire(kind: str) -> None:
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "segfault":
        ctypes.string_at(0)  # read address 0: SIGSEGV
    elif kind == "exit3":
        os._exit(3)
    elif kind == "raise":
        raise RuntimeError("injected failure inside the kernel")
    elif kind == "slow-raise":  # fails after its tick has come
        time.sleep(0.2)
        raise RuntimeError("injected failure inside the kernel, late")
    elif kind == "hang":
        time.sleep(3600)
    else:
        raise ValueError(f"unknown fault {kind!r}")


def install(kind: str, marker_dir: str, scope: str = "once") -> None:
    if kind == "startup":
        if scope == "always" or _claim(marker_dir):
            os._exit(1)
        return
    original = framering.worker.composite_stack

    def faulty(frame: Any, stack: Any, **kwargs: Any) -> None:
        marked = bool((stack.opacity == MARK).any())
        if scope == "marked":
            if marked:
                scribble(kind, frame, kwargs)
        elif (marked or scope == "once") and _claim(marker_dir):
            scribble(kind, frame, kwargs)
        original(frame, stack, **kwargs)

    def scribble(kind: str, frame: Any, kwargs: dict[str, Any]) -> None:
        """``scribble``: garbage over the whole slot, then raise (anything may be left in a
        failed frame's slot); ``scribble-sigkill``: garbage over the task's boxes (all a
        kernel writes), then die mid-frame; anything else: :func:`fire`."""
        if kind == "scribble":
            frame[...] = 77
            fire("raise")
        elif kind == "scribble-sigkill":
            for x0, y0, x1, y1 in kwargs["rects"].tolist():
                frame[y0:y1, x0:x1] = 77
            fire("sigkill")
        fire(kind)

    framering.worker.composite_stack = faulty


def install_in_transforms(kind: str, marker_dir: str, scope: str = "once") -> None:
    """Like :func:`install`, for the worker's ``Engine.transform`` tasks."""
    original = framering.worker.apply_transform

    def faulty(*args: Any, **kwargs: Any) -> Any:
        if scope == "always" or _claim(marker_dir):
            fire(kind)
        return original(*args, **kwargs)

    framering.worker.apply_transform = faulty


def refuse_to_start(message: str) -> None:
    """An initializer that fails the way a missing device or licence would."""
    raise RuntimeError(message)


def slow_replacements(marker_dir: str, first: int) -> None:
    """An initializer: the first ``first`` workers start at once, every later one (a
    replacement) takes 10 s, as on a machine too loaded to spawn quickly."""
    started = len(os.listdir(marker_dir))
    with open(os.path.join(marker_dir, f"started-{os.getpid()}"), "w"):
        pass
    if started >= first:
        time.sleep(10)


_ballast: list[Any] = []


def ballast_once(marker_dir: str, megabytes: int) -> None:
    """An initializer: the first worker to start holds ``megabytes`` of private memory it
    touched (a leak, as the pool sees it); later workers start lean. Its pid goes to
    ``ballast-pid`` in ``marker_dir`` (the pool may recycle it before a test can ask)."""
    if _claim(marker_dir):
        import numpy as np

        _ballast.append(np.ones(megabytes * 2**20, np.uint8))
        with open(os.path.join(marker_dir, "ballast-pid"), "w") as marker:
            marker.write(str(os.getpid()))


def hang_second_start(marker_dir: str) -> None:
    """An initializer: the second worker process to start hangs for ever (a spawn or a
    device open that never returns); every other one starts at once."""
    started = len(os.listdir(marker_dir))
    with open(os.path.join(marker_dir, f"started-{os.getpid()}"), "w"):
        pass
    if started == 1:
        time.sleep(3600)
