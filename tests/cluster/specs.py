"""Stream specs the cluster tests run on their nodes: each writes what it delivers to a file,
which the test reads back (every simulated node is this machine)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from framering import Engine, Layer
from framering.cluster import StreamSpec

SIZE = (160, 96)  # small frames: the nodes share this machine's two cores


class Recording(StreamSpec):
    """A sliding grey picture; each delivered frame appends ``index time pixel`` to ``path``."""

    def __init__(self, path: str, shade: int = 90) -> None:
        self.path = path
        self.shade = shade

    def setup(self, engine: Engine) -> None:
        width, height = engine.frame_size
        self.engine = engine
        self.picture = engine.upload(np.full((height, width, 4), self.shade, np.uint8))
        self.out = open(self.path, "a")  # noqa: SIM115 - closed in teardown
        self.out.write("setup\n")

    def scene(self, t: float, index: int) -> Sequence[Layer]:
        return [Layer(self.picture, x=index % 9 - 4)]

    def deliver(self, frame) -> None:  # type: ignore[no-untyped-def]
        self.out.write(f"{frame.index} {time.time():.4f} {int(frame.pixels[48, 80, 0])}\n")
        self.out.flush()

    def teardown(self) -> None:
        self.out.write("teardown\n")
        self.out.close()
        self.engine.free(self.picture)


class NeverDone(Recording):
    """Each frame takes far longer than its ticks allow (a big translucent stack that moves
    every frame, so that damage tracking cannot skip it, run at 1000 fps): under drop, not
    one is ever delivered."""

    def scene(self, t: float, index: int) -> Sequence[Layer]:
        return [Layer(self.picture, x=(index + i) % 5, opacity=0.5) for i in range(1200)]


class SlowSetup(Recording):
    def __init__(self, path: str, seconds: float) -> None:
        super().__init__(path)
        self.seconds = seconds

    def setup(self, engine: Engine) -> None:
        super().setup(engine)
        time.sleep(self.seconds)


class FailsOnSetup(StreamSpec):
    def setup(self, engine: Engine) -> None:
        raise RuntimeError("the camera is unplugged")

    def scene(self, t: float, index: int) -> Sequence[Layer]:
        return []


class FailsAtFrame(Recording):
    """Its scene raises at frame ``bad``: a bug of the user's, reported, not re-placed."""

    def __init__(self, path: str, bad: int) -> None:
        super().__init__(path)
        self.bad = bad

    def scene(self, t: float, index: int) -> Sequence[Layer]:
        if index == self.bad:
            raise ValueError(f"no layers for frame {index}")
        return super().scene(t, index)


class Unpicklable(StreamSpec):
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def scene(self, t: float, index: int) -> Sequence[Layer]:
        return []


def delivered(path: str) -> list[int]:
    """Indices a Recording wrote, in the order it delivered them (setup/teardown lines out)."""
    with open(path) as lines:
        return [int(line.split()[0]) for line in lines if line[0].isdigit()]


def lines(path: str) -> list[str]:
    with open(path) as text:
        return text.read().split("\n")


def wait_for(condition, timeout: float, every: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()
