"""What ``Cluster.open_stream`` returns: the caller's handle on one stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from framering.cluster.figures import ClusterStreamMetrics

if TYPE_CHECKING:
    from framering.cluster.cluster import Cluster


class ClusterStream:
    """A stream of a :class:`~framering.cluster.Cluster`, wherever it runs now."""

    def __init__(self, cluster: Cluster, name: str) -> None:
        self._cluster = cluster
        self.name = name
        self._final: ClusterStreamMetrics | None = None

    def __repr__(self) -> str:
        return f"ClusterStream({self.name!r}, node={self.node_id})"

    @property
    def node_id(self) -> str | None:
        """The node it runs on (None while it waits for one, or once stopped)."""
        return self.metrics().node_id

    def metrics(self) -> ClusterStreamMetrics:
        """Its figures as of the last reports (``Cluster.metrics().streams[name]``), or its
        final ones once stopped."""
        if self._final is not None:
            return self._final
        return self._cluster.stream_metrics(self.name)

    def stop(self) -> ClusterStreamMetrics:
        """Stop it on its node (``teardown`` runs there); its final figures, which
        :meth:`metrics` gives from then on. The name is free again. Idempotent."""
        if self._final is None:
            self._final = self._cluster.stop_stream(self.name)
        return self._final
