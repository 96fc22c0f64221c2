"""Zero copy is a promise: a frame's pixels never cross a pipe and are never pickled."""

from __future__ import annotations

import multiprocessing.connection
import pickle

import numpy as np
import pytest

from framering import Engine, Layer, Transform


def bytes_on_pipes_per_frame(width: int, height: int, frames: int = 20) -> float:
    # damage=False: every frame is composited whole and crosses the pipes (a still scene
    # with damage tracking sends nothing at all)
    with Engine(width, height, slots=2, workers=1, damage=False) as eng:
        rng = np.random.default_rng(0)
        background = eng.upload(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
        logo = eng.upload(rng.integers(0, 256, (height // 2, width // 2, 4), dtype=np.uint8))
        camera = eng.live_source(width // 2, height // 2)
        with camera.write() as pixels:
            pixels[...] = 200
        small_logo = Transform(size=(16, 9), flip="horizontal", interpolation="area")
        layers = [
            Layer(background),
            Layer(camera, x=5, y=5),
            Layer(logo, x=-3, opacity=0.5),
            Layer(logo, x=7, transform=small_logo),
        ]
        with eng.acquire() as scene:  # a finished frame shown inside the others
            scene.submit(layers)
            scene.wait()
            layers.append(Layer(scene, x=20, y=4, transform=Transform(size=(32, 18))))
            eng.render(layers)  # warm: any one-off message is out of the way
            before = eng.metrics()
            for _ in range(frames):
                eng.render(layers)
            after = eng.metrics()
    sent = after.ipc_bytes_sent - before.ipc_bytes_sent
    received = after.ipc_bytes_received - before.ipc_bytes_received
    return (sent + received) / frames


def test_bytes_on_the_pipes_do_not_grow_with_the_frame() -> None:
    small = bytes_on_pipes_per_frame(64, 36)
    large = bytes_on_pipes_per_frame(1920, 1080)
    assert small == large  # the same descriptors, whatever the pixels
    # a few fixed-size records (32 bytes a layer, 56 a transform), against 8 MB of pixels
    assert large < 512


def test_no_object_is_pickled_onto_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    with Engine(320, 180, slots=2, workers=1) as eng:
        source = eng.upload(np.full((180, 320, 4), 255, np.uint8))

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("an object was pickled onto a pipe")

        monkeypatch.setattr(multiprocessing.connection.Connection, "send", refuse)
        monkeypatch.setattr(pickle, "dumps", refuse)
        for _ in range(5):
            assert (eng.render([Layer(source)]) == 255).all()
