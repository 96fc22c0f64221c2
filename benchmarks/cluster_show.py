"""The show the cluster benchmark runs on each node (a module of its own: it needs Ray's extra,
and the nodes import it by name, as they would a user's spec)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from framering import Engine, Layer
from framering.cluster import StreamSpec

from .cluster_bench import HEIGHT, WIDTH


class Show(StreamSpec):
    """A small live show: a backdrop, a card sliding across it, a camera publishing each frame."""

    def setup(self, engine: Engine) -> None:
        rng = np.random.default_rng(7)
        self.engine = engine
        backdrop = rng.integers(0, 255, (HEIGHT, WIDTH, 4), np.uint8)
        backdrop[..., 3] = 255
        card = np.full((72, 200, 4), (240, 200, 40, 200), np.uint8)
        self.backdrop = engine.upload(backdrop)
        self.card = engine.upload(card)
        self.camera = engine.live_source(160, 90, opaque=True)
        self.frames = 0

    def scene(self, t: float, index: int) -> Sequence[Layer]:
        with self.camera.write() as pixels:
            pixels[:] = index % 255
        return [
            Layer(self.backdrop),
            Layer(self.camera, x=460, y=250),
            Layer(self.card, x=int(40 + 300 * (t % 2.0) / 2.0), y=260),
        ]

    def deliver(self, frame) -> None:  # type: ignore[no-untyped-def]
        self.frames += 1  # an encoder would take frame.pixels here

    def teardown(self) -> None:
        for source in (self.card, self.backdrop, self.camera):
            self.engine.free(source)


class Echo:
    """A Ray actor that answers at once: what one Ray call costs the driver, measured."""

    def echo(self, value: object) -> object:
        return value
