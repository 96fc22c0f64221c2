"""Every exception the engine raises, in one place.

The tree::

    FrameringError                      base of everything below
    ├── EngineClosedError               you closed the engine; any later call raises this
    ├── EngineBrokenError               something broke (workers keep dying at start-up)
    ├── FrameFailedError                one frame failed every attempt; the engine still works
    ├── FrameringTimeoutError           also a TimeoutError
    │   ├── AcquireTimeoutError         every slot stayed busy
    │   ├── WaitTimeoutError            the frame was not finished in time
    │   └── SourceBusyError             a live source's buffers stayed pinned / a source in use
    ├── InvalidArgumentError            bad input, refused before anything reaches a worker
    │   ├── InvalidTypeError            also a TypeError
    │   └── InvalidValueError           also a ValueError
    │       └── SlotReservationError    a stream's reserved slots the ring cannot honour
    ├── SlotStateError                  a slot used out of order (released twice, waited
    │                                   before submit, submitted twice); also a RuntimeError
    ├── ForeignObjectError              a source or slot of another engine, or already freed;
    │                                   also a ValueError
    ├── SharedMemoryError               /dev/shm is too small for what was asked; also OSError
    ├── ForeignProcessError             an engine used from another process (a fork child,
    │                                   or an object that was pickled); also a RuntimeError
    ├── ProtocolError                   a message on a pipe that does not parse
    └── ClusterError                    a cluster cannot place a stream (no live node has
                                        room), or was asked for a node it has no host on

"You closed it" and "it broke" are kept apart, as trio does: code that closes an engine on
purpose can ignore ``EngineClosedError`` without hiding a crash.
"""

from __future__ import annotations


class FrameringError(Exception):
    """Base class of every framering engine error."""


class EngineClosedError(FrameringError):
    """The engine was closed (by ``close()``, a ``with`` block, or interpreter exit)."""


class EngineBrokenError(FrameringError):
    """The engine cannot go on: the message says why (e.g. workers die while starting)."""


class FrameFailedError(FrameringError):
    """A frame failed on every attempt; ``cause`` names the last failure.

    Attributes:
        cause: exit code or signal of the worker that died, or the worker's traceback text.
        attempts: how many times the frame was tried.
    """

    def __init__(self, message: str, *, cause: str, attempts: int) -> None:
        super().__init__(message)
        self.cause = cause
        self.attempts = attempts


class FrameringTimeoutError(FrameringError, TimeoutError):
    """Base of the engine's timeouts; also a builtin ``TimeoutError``."""


class AcquireTimeoutError(FrameringTimeoutError):
    """No frame slot became free in time: every slot is in flight or not released."""


class WaitTimeoutError(FrameringTimeoutError):
    """The frame was not finished within the timeout given to ``wait()``."""


class SourceBusyError(FrameringTimeoutError):
    """A source stayed in use: every live-source buffer pinned, or a source still being read."""


class InvalidArgumentError(FrameringError):
    """Bad input, refused in the caller's process before anything reached a worker."""


class InvalidTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type."""


class InvalidValueError(InvalidArgumentError, ValueError):
    """An argument of the right type with a wrong value."""


class SlotReservationError(InvalidValueError):
    """``open_stream`` asked for more reserved slots than the ring has left unreserved."""


class SlotStateError(FrameringError, RuntimeError):
    """A frame slot used out of order."""


class ForeignObjectError(FrameringError, ValueError):
    """A source or slot that belongs to another engine, or was already freed or released."""


class SharedMemoryError(FrameringError, OSError):
    """Shared memory could not be had: ``/dev/shm`` is too small or a segment is missing."""


class ForeignProcessError(FrameringError, RuntimeError):
    """An engine, or one of its objects, used outside the process that made it.

    Its threads, pipes and locks live in that process only: use it there, or make an engine
    in the other process."""


class ProtocolError(FrameringError):
    """A message on a pipe that does not parse."""


class ClusterError(FrameringError):
    """A cluster (``framering.cluster``) cannot do what was asked: no live node can take a
    stream, or a node it was asked for has no framering host."""
