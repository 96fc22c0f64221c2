"""Reading a worker's replies in bulk: ``multiprocessing.connection``'s framing, parsed here.

A worker writes each reply with ``Connection.send_bytes``: a 4-byte big-endian length (or -1
and an 8-byte length, beyond 2 GiB), then the bytes. ``Connection.recv_bytes`` reads that with
two system calls a message and a few layers of Python. The manager thread instead reads
whatever the pipe holds in one call and cuts every complete message out of it: one system
call per wake-up however many replies arrived (completions are handled in a batch), and
fewer Python steps per reply. A message cut in two by the pipe waits in the buffer for its
rest.
"""

from __future__ import annotations

import os
import struct
from multiprocessing.connection import Connection
from typing import Final

_LENGTH: Final = struct.Struct("!i")
_LONG_LENGTH: Final = struct.Struct("!Q")
# Bytes asked for per read: far more than a wake-up's worth of replies (a DONE is 30 bytes,
# an ERROR a traceback), so one read nearly always empties the pipe.
READ_SIZE: Final = 1 << 16


class MessageReader:
    """The messages arriving on one connection, in order (the connection itself is only asked
    for its file descriptor, each read: a closed one raises instead of naming a reused
    descriptor)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._buffer = bytearray()

    def read(self) -> tuple[list[bytes], bool]:
        """Read once (the pipe is readable, so this does not block) and return the complete
        messages buffered, and whether the pipe is still open (False: end of file, or an
        error: the writer is gone)."""
        try:
            chunk = os.read(self._conn.fileno(), READ_SIZE)
        except OSError:
            return self.complete(), False
        if chunk:
            self._buffer += chunk
        return self.complete(), bool(chunk)

    def complete(self) -> list[bytes]:
        """Cut every complete message off the front of the buffer.

        A negative length other than -1 means the stream is corrupt (something else wrote to
        the pipe): it becomes one empty message, which fails to decode and is counted as a
        protocol error (as ``recv_bytes`` gave it), and the rest of the buffer, which can no
        longer be cut into messages, is dropped, instead of the parse never advancing.
        """
        buffer = self._buffer
        messages = []
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (size,) = _LENGTH.unpack_from(buffer, start)
            body = start + 4
            if size == -1:
                if end - body < 8:
                    break
                (size,) = _LONG_LENGTH.unpack_from(buffer, body)
                body += 8
            elif size < 0:
                messages.append(b"")
                start = end
                break
            if end - body < size:
                break
            messages.append(bytes(buffer[body : body + size]))
            start = body + size
        if start:
            del buffer[:start]
        return messages
