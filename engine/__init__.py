"""framering's engine: worker processes compositing into a shared-memory frame ring.

::

    from framering import Engine, Layer

    with Engine(1920, 1080, slots=8) as eng:
        bg = eng.upload(background)
        with eng.acquire(timeout=1.0) as slot:
            slot.submit([Layer(bg)])
            frame = slot.wait(timeout=1.0)      # a view into shared memory
"""

from framering.clock import StreamFrame
from framering.elastic import WorkerBudget
from framering.engine import Engine
from framering.errors import (
    AcquireTimeoutError,
    ClusterError,
    EngineBrokenError,
    EngineClosedError,
    ForeignObjectError,
    ForeignProcessError,
    FrameFailedError,
    FrameringError,
    FrameringTimeoutError,
    InvalidArgumentError,
    InvalidTypeError,
    InvalidValueError,
    ProtocolError,
    SharedMemoryError,
    SlotReservationError,
    SlotStateError,
    SourceBusyError,
    WaitTimeoutError,
)
from framering.kernels.transform import Transform
from framering.layer import Layer
from framering.metrics import Metrics, StreamMetrics, WorkerMetrics
from framering.ring import SlotState
from framering.slots import FrameSlot
from framering.sources import LiveSource, Source
from framering.streams import Stream
from framering.transitions import crossfade, wipe
from framering.workers import physical_cores

__all__ = [
    "AcquireTimeoutError",
    "ClusterError",
    "Engine",
    "EngineBrokenError",
    "EngineClosedError",
    "ForeignObjectError",
    "ForeignProcessError",
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
    "SlotReservationError",
    "SlotState",
    "SlotStateError",
    "Source",
    "SourceBusyError",
    "Stream",
    "StreamFrame",
    "StreamMetrics",
    "Transform",
    "WaitTimeoutError",
    "WorkerBudget",
    "WorkerMetrics",
    "crossfade",
    "physical_cores",
    "wipe",
]
