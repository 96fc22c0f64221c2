"""Reading replies in bulk gives exactly the messages Connection.send_bytes wrote."""

from __future__ import annotations

import multiprocessing
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from framering.framing import MessageReader


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=300), max_size=12),
    st.lists(st.integers(1, 64), min_size=1, max_size=8),
)
def test_messages_read_in_bulk_are_those_sent_whatever_the_pipe_cuts(
    messages: list[bytes], cuts: list[int]
) -> None:
    reader_end, writer_end = multiprocessing.Pipe(duplex=False)
    raw_reader, raw_writer = os.pipe()
    try:
        for message in messages:  # the wire bytes, as send_bytes frames them
            writer_end.send_bytes(message)
        wire = b""
        while reader_end.poll(0):
            wire += os.read(reader_end.fileno(), 1 << 16)
        received: list[bytes] = []
        bulk = MessageReader(_Fd(raw_reader))  # type: ignore[arg-type]
        position, turn = 0, 0
        while position < len(wire):  # arrive in pieces of the drawn sizes
            piece = wire[position : position + cuts[turn % len(cuts)]]
            position += len(piece)
            turn += 1
            os.write(raw_writer, piece)
            more, still_open = bulk.read()
            assert still_open
            received += more
        assert received == messages
        os.close(raw_writer)
        raw_writer = -1
        assert bulk.read() == ([], False)  # end of file: the writer is gone
    finally:
        for fd in (raw_reader, raw_writer):
            if fd >= 0:
                os.close(fd)
        reader_end.close()
        writer_end.close()


def test_a_reader_of_a_closed_connection_reports_it_gone_without_reading() -> None:
    reader_end, writer_end = multiprocessing.Pipe(duplex=False)
    bulk = MessageReader(reader_end)
    writer_end.send_bytes(b"late")
    reader_end.close()
    assert bulk.read() == ([], False)
    writer_end.close()


def test_a_corrupt_length_gives_one_empty_message_and_the_reader_goes_on() -> None:
    reader_end, writer_end = multiprocessing.Pipe(duplex=False)
    bulk = MessageReader(reader_end)
    os.write(writer_end.fileno(), (-4).to_bytes(4, "big", signed=True) + b"garbage")
    assert bulk.read() == ([b""], True)  # an empty message fails to decode: a protocol error
    writer_end.send_bytes(b"next")
    assert bulk.read() == ([b"next"], True)
    reader_end.close()
    writer_end.close()


class _Fd:
    """A bare pipe end standing in for a Connection (the reader only asks its fileno)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd
