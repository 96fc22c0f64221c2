"""A worker process on its own: it answers everything, survives garbage, and reports why it
could not start."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing.connection import Connection

import numpy as np
import pytest

from framering import Engine, Layer, protocol, shm
from framering.kernels import PixelLayer, composite_stack
from framering.protocol import LAYER_RECORD
from framering.ring import FrameRing, SlotState
from framering.worker import worker_main
from tests import faults

REPLY_TIMEOUT_S = 120.0  # a loaded CI machine spawning numba and OpenCV


def reply(conn: Connection) -> protocol.Message:
    assert conn.poll(REPLY_TIMEOUT_S), "the worker did not answer"
    return protocol.decode(conn.recv_bytes())


@pytest.fixture
def worker() -> Iterator[tuple[Connection, FrameRing]]:
    ring = FrameRing.create(shm.segment_name(shm.new_engine_token(), "ring"), 32, 16, 2)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=worker_main, args=(child, ring.segment.name, os.getpid()))
    process.start()
    child.close()
    try:
        assert isinstance(reply(parent), protocol.Hello)
        yield parent, ring
        assert process.is_alive(), "garbage killed the worker"
        parent.send_bytes(protocol.encode_stop())
        process.join(10)
    finally:
        if process.is_alive():
            process.kill()
            process.join(5)
        parent.close()
        ring.release_views()
        ring.segment.close_and_unlink()


GARBAGE = [
    b"",
    b"\x00",
    b"not a framering message at all",
    bytes([protocol.MAGIC, protocol.VERSION + 1, 4, 0]),  # another protocol version
    bytes([protocol.MAGIC, protocol.VERSION, 250, 0]),  # unknown message type
    protocol.encode_render(1, 1, 0, True, np.zeros((1, 4)), np.zeros(2, LAYER_RECORD))[:-7],
    protocol.encode_attach(99, 10, 10, 1, "framering-0-0-nope"),  # a segment that is not there
]


def test_garbage_on_a_worker_pipe_is_answered_and_never_kills_it(
    worker: tuple[Connection, FrameRing],
) -> None:
    conn, ring = worker
    whole = np.array([[0, 0, ring.width, ring.height]])
    for junk in GARBAGE:
        conn.send_bytes(junk)
        answer = reply(conn)
        assert isinstance(answer, protocol.Error) and answer.text, junk
    # a task into a slot the parent did not hand it is refused, with the reason
    conn.send_bytes(
        protocol.encode_render(7, 1, 0, True, whole, np.zeros(0, protocol.LAYER_RECORD))
    )
    failed = reply(conn)
    assert isinstance(failed, protocol.Failed) and (failed.task, failed.attempt) == (7, 1)
    assert "not RENDERING" in failed.text
    ring.set_state(0, SlotState.RENDERING)
    conn.send_bytes(
        protocol.encode_render(8, 2, 0, True, whole, np.zeros(0, protocol.LAYER_RECORD))
    )
    done = reply(conn)
    assert isinstance(done, protocol.Done) and (done.task, done.attempt) == (8, 2)
    assert (ring.frame(0) == 0).all()  # no layers: transparent black


def test_a_worker_that_cannot_start_sends_its_traceback_before_it_dies() -> None:
    ring = FrameRing.create(shm.segment_name(shm.new_engine_token(), "ring"), 8, 8, 1)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=worker_main,
        args=(child, ring.segment.name, os.getpid(), faults.refuse_to_start, ("no camera",)),
    )
    try:
        process.start()
        child.close()
        error = reply(parent)
        assert isinstance(error, protocol.Error)
        assert "Traceback" in error.text
        assert error.text.rstrip().endswith("RuntimeError: no camera")
        process.join(REPLY_TIMEOUT_S)
        assert process.exitcode != 0
    finally:
        if process.is_alive():
            process.kill()
        parent.close()
        ring.release_views()
        ring.segment.close_and_unlink()


def test_a_camera_cycling_its_buffers_under_still_overlays_gives_every_frame_right() -> None:
    # the worker keeps packed stacks by their records: the same records must always mean the
    # same pictures, whichever buffer the camera published into, and after sources changed
    rng = np.random.default_rng(11)
    h, w = 36, 48
    background = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    overlay = rng.integers(0, 256, (12, 20, 4), dtype=np.uint8)
    pictures = [rng.integers(0, 256, (20, 30, 4), dtype=np.uint8) for _ in range(5)]
    with Engine(w, h, slots=2, workers=1, damage=False) as eng:
        camera = eng.live_source(30, 20, buffers=3)
        still = [Layer(eng.upload(background)), Layer(camera, x=-4, y=9)]
        top = Layer(eng.upload(overlay), x=30, y=-3, opacity=0.6)
        for index in range(12):
            picture = pictures[index % 5]
            with camera.write() as buffer:
                buffer[...] = picture
            if index == 6:  # the overlay's source goes, another takes its place
                eng.free(top.source)  # type: ignore[arg-type]
                overlay = rng.integers(0, 256, (12, 20, 4), dtype=np.uint8)
                top = Layer(eng.upload(overlay), x=30, y=-3, opacity=0.6)
            expected = np.empty((h, w, 4), np.uint8)
            composite_stack(
                expected,
                [
                    PixelLayer(background),
                    PixelLayer(picture, x=-4, y=9),
                    PixelLayer(overlay, x=30, y=-3, opacity=0.6),
                ],
            )
            np.testing.assert_array_equal(eng.render([*still, top]), expected)


def test_the_stack_key_covers_every_field_a_packed_stack_is_made_of() -> None:
    from framering.worker import _STACK_FIELDS_BYTES

    before = {
        name for name, (_, offset) in LAYER_RECORD.fields.items() if offset < _STACK_FIELDS_BYTES
    }
    assert before == {"source", "buffer", "mode", "flags", "x", "y", "opacity"}


def test_moves_and_fades_give_every_frame_right_through_zero_and_off_the_frame() -> None:
    # the worker keeps a stack by everything but its placements and gives a move or a fade the
    # kept one placed anew, unless a layer was or would be dropped (opacity 0, outside the
    # frame): every frame must be the frame a fresh packing gives
    rng = np.random.default_rng(12)
    h, w = 30, 40
    background = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    logo = rng.integers(0, 256, (10, 14, 4), dtype=np.uint8)
    steps = [0.9, 0.6, 0.6, 0.3, 0.0, 0.0, 0.2, 1.0, 0.7, 0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5]
    # it stays, then slides left off the frame, and back in from the right
    places = [20, 20, 20, 20, 20, 20, 20, 20, 3, -5, -13, -14, -40, 45, 39, 26]
    with Engine(w, h, slots=2, workers=1, damage=False) as eng:
        under, over = eng.upload(background), eng.upload(logo)
        for index, (fade, x) in enumerate(zip(steps, places, strict=True)):
            layers = [Layer(under, opacity=0.8), Layer(over, x=x, y=-2, opacity=fade)]
            expected = np.empty((h, w, 4), np.uint8)
            composite_stack(
                expected,
                [PixelLayer(background, opacity=0.8), PixelLayer(logo, x=x, y=-2, opacity=fade)],
            )
            np.testing.assert_array_equal(eng.render(layers), expected, err_msg=str(index))
