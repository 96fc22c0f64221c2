"""The frame's done flag: what FrameSlot.wait blocks on (no processes involved)."""

from __future__ import annotations

import threading
import time

from framering.frames import DoneFlag


def test_a_done_flag_times_out_while_unset_and_returns_at_once_when_set() -> None:
    flag = DoneFlag()
    began = time.monotonic()
    assert flag.wait(0.05) is False
    assert time.monotonic() - began >= 0.04
    assert flag.wait(0) is False and flag.wait(-1.0) is False  # a negative timeout polls
    assert not flag.is_set()
    flag.set()
    flag.set()  # a second set changes nothing
    assert flag.is_set() and flag.wait(0) and flag.wait(None) and flag.wait(5.0)


def test_setting_a_done_flag_wakes_every_thread_waiting_on_it() -> None:
    flag = DoneFlag()
    woke: list[bool] = []
    lock = threading.Lock()

    def waiter() -> None:
        result = flag.wait(10.0)
        with lock:
            woke.append(result)

    threads = [threading.Thread(target=waiter) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)  # let them block
    assert woke == []
    flag.set()
    for thread in threads:
        thread.join(5.0)
    assert woke == [True] * 5


def test_a_waiter_stranded_by_an_interrupted_one_still_wakes_once_the_flag_is_set() -> None:
    flag = DoneFlag()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(flag.wait(10.0)))
    waiter.start()
    time.sleep(0.05)
    # set, and the gate taken by a waiter interrupted (Ctrl-C) right after it got it, which
    # never hands it on: the flag's state as that leaves it (white box: no other way there)
    flag._set = True
    waiter.join(5.0)
    assert woke == [True]
    assert flag.wait(None) and flag.wait(0)
