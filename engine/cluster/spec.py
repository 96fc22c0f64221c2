"""What a stream of a cluster does, written by the user and run on the node that hosts it."""

from __future__ import annotations

from collections.abc import Sequence

from framering.clock import StreamFrame
from framering.engine import Engine
from framering.layer import Layer


class StreamSpec:
    """Subclass this to describe one stream of a :class:`~framering.cluster.Cluster`.

    The object is pickled once, when the stream is opened, and each node that hosts the
    stream gets a fresh copy of it as it was then: what ``setup`` builds on one node (sources,
    a decoder, an encoder) is built again by ``setup`` on the next node after a failover or a
    move. Every method runs on the hosting node, in the process of its engine, so the frames
    never leave that node: ``scene`` and ``deliver`` run in the stream's own thread, one frame
    at a time, in order.
    """

    def setup(self, engine: Engine) -> None:
        """Prepare the stream on its node: upload sources, open live sources, start a decoder
        or an encoder. ``engine`` is the node's engine for this stream's frame size, shared
        with the other streams of that size on the node: free what you made in
        :meth:`teardown`. An exception here fails ``open_stream`` (or the re-placement)."""

    def scene(self, t: float, index: int) -> Sequence[Layer]:
        """The layers of frame ``index``, at stream time ``t`` seconds (``index / fps``).
        Indices and times carry on across failovers and moves."""
        raise NotImplementedError(f"{type(self).__name__} must define scene(t, index)")

    def deliver(self, frame: StreamFrame) -> None:
        """Hand a finished frame to this node's encoder or sink. ``frame.pixels`` is a
        read-only view into the node's shared memory, valid until this method returns."""

    def teardown(self) -> None:
        """Undo :meth:`setup`: the stream stopped, moved, or the cluster is closing."""
