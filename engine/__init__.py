"""framering's engine: worker processes compositing into a shared-memory frame ring.

::

    from engine import Engine, Layer

    with Engine(1920, 1080, slots=8) as eng:
        bg = eng.upload(background)
        with eng.acquire(timeout=1.0) as slot:
            slot.submit([Layer(bg)])
            frame = slot.wait(timeout=1.0)      # a view into shared memory
"""

from engine.engine import Engine, physical_cores
from engine.errors import (
    AcquireTimeoutError,
    EngineBrokenError,
    EngineClosedError,
    ForeignObjectError,
    FrameFailedError,
    FrameringError,
    FrameringTimeoutError,
    InvalidArgumentError,
    InvalidTypeError,
    InvalidValueError,
    ProtocolError,
    SharedMemoryError,
    SlotStateError,
    SourceBusyError,
    WaitTimeoutError,
)
from engine.layer import Layer
from engine.metrics import Metrics, WorkerMetrics
from engine.ring import SlotState
from engine.slots import FrameSlot
from engine.sources import LiveSource, Source
from engine.stream import StreamFrame
from engine.transitions import crossfade, wipe
from kernels.transform import Transform

__all__ = [
    "AcquireTimeoutError",
    "Engine",
    "EngineBrokenError",
    "EngineClosedError",
    "ForeignObjectError",
    "FrameFailedError",
    "FrameSlot",
    "FrameringError",
    "FrameringTimeoutError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "InvalidValueError",
    "Layer",
    "LiveSource",
    "Metrics",
    "ProtocolError",
    "SharedMemoryError",
    "SlotState",
    "SlotStateError",
    "Source",
    "SourceBusyError",
    "StreamFrame",
    "Transform",
    "WaitTimeoutError",
    "WorkerMetrics",
    "crossfade",
    "physical_cores",
    "wipe",
]
