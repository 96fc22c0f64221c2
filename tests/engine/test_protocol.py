"""The parent-worker protocol: every message decodes to what was encoded, or is refused."""

from __future__ import annotations

import numpy as np
import pytest

from framering import Transform, protocol

BAND = np.array([[0, 0, 8, 5]])


def a_transform() -> Transform:
    return Transform(crop=(1, 2, 3, 4), flip="vertical", rotate=90, size=(8, 8), angle=5.0)


def test_the_sizes_the_protocol_docstring_quotes_are_the_sizes_sent() -> None:
    assert protocol.LAYER_RECORD.itemsize == 32
    assert protocol.TRANSFORM_RECORD.itemsize == 56
    four = np.zeros(4, protocol.LAYER_RECORD)
    whole = np.array([[0, 0, 1920, 1080]])
    assert len(protocol.encode_render(1, 1, 0, True, whole, four)) == 176
    assert "176 bytes" in (protocol.__doc__ or "")


def test_a_reply_names_the_task_and_the_attempt_it_answers() -> None:
    done = protocol.decode(protocol.encode_done(41, 3, 1234))
    assert done == protocol.Done(task=41, attempt=3, worker_ns=1234)
    failed = protocol.decode(protocol.encode_failed(41, 2, "Traceback...\nValueError: no"))
    assert failed == protocol.Failed(task=41, attempt=2, text="Traceback...\nValueError: no")


def test_a_render_and_a_transform_are_two_message_types() -> None:
    layers = np.zeros(2, protocol.LAYER_RECORD)
    layers["source"] = [3, 4]
    boxes = np.array([[0, 10, 8, 20], [9, 1, 12, 2]])
    render = protocol.decode(protocol.encode_render(9, 2, 5, False, boxes, layers))
    assert isinstance(render, protocol.Render)
    assert (render.task, render.attempt, render.slot, render.clear) == (9, 2, 5, False)
    assert render.boxes.tolist() == boxes.tolist()
    assert render.layers["source"].tolist() == [3, 4]
    record = np.zeros(1, protocol.TRANSFORM_RECORD)
    protocol.pack_transform(a_transform(), record)
    job = protocol.decode(protocol.encode_transform(9, 1, 77, layers[0], record[0]))
    assert isinstance(job, protocol.TransformInto)
    assert (job.task, job.attempt, job.target) == (9, 1, 77)
    assert job.transform == a_transform()


def test_protocol_decoder_refuses_every_truncation_of_every_message() -> None:
    messages = [
        protocol.encode_hello(1),
        protocol.encode_attach(1, 2, 3, 4, "framering-1-ab-src1"),
        protocol.encode_detach(5),
        protocol.encode_render(1, 2, 3, True, BAND, np.zeros(3, protocol.LAYER_RECORD)),
        protocol.encode_render(
            1,
            2,
            3,
            True,
            BAND,
            np.zeros(3, protocol.LAYER_RECORD),
            np.zeros(2, protocol.TRANSFORM_RECORD),
        ),
        protocol.encode_transform(
            1,
            1,
            2,
            np.zeros(1, protocol.LAYER_RECORD)[0],
            np.zeros(1, protocol.TRANSFORM_RECORD)[0],
        ),
        protocol.encode_done(1, 2, 3),
        protocol.encode_failed(1, 2, "boom"),
    ]
    for message in messages:
        protocol.decode(message)
        for cut in range(len(message) - 1):
            try:
                protocol.decode(message[:cut])
            except protocol.ProtocolError:
                continue
            # only variable-length tails may be cut silently (text of FAILED/ERROR)
            assert message[:4] == protocol.encode_failed(0, 0, "")[:4], (message, cut)


def test_a_transform_record_that_makes_no_transform_does_not_decode() -> None:
    layers = np.zeros(1, protocol.LAYER_RECORD)
    good = np.zeros(1, protocol.TRANSFORM_RECORD)
    protocol.pack_transform(a_transform(), good)
    assert protocol.decode(protocol.encode_render(1, 0, 1, True, BAND, layers, good))
    for field, value in (("rotate", 7), ("flip", 9), ("interpolation", 200), ("angle", np.inf)):
        bad = good.copy()
        bad[0][field] = value
        with pytest.raises(protocol.ProtocolError, match="bad transform record"):
            protocol.decode(protocol.encode_render(1, 0, 1, True, BAND, layers, bad))
        with pytest.raises(protocol.ProtocolError, match="bad transform record"):
            protocol.decode(protocol.encode_transform(1, 1, 2, layers[0], bad[0]))
