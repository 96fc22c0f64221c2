"""framering on a Ray cluster: live streams spread over nodes, frames never leave their node.

::

    from framering.cluster import Cluster, StreamSpec  # pip install 'framering[cluster]'

    class Show(StreamSpec):
        def setup(self, engine): ...        # on the stream's node: sources, decoder, encoder
        def scene(self, t, index): ...      # the layers of frame ``index``
        def deliver(self, frame): ...       # the finished frame, to this node's encoder

    with Cluster() as cluster:
        show = cluster.open_stream("show-1", Show(), width=1920, height=1080, fps=30)
        cluster.metrics()

Each node runs one host (a Ray actor) with its own engines, worker processes and shared
memory; Ray places the hosts, carries control messages and reports, and tells the driver
when a node is lost, and the driver sets that node's streams up again elsewhere. Only this
package imports Ray: ``framering`` itself never does.
"""

try:
    import ray  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on what is installed
    raise ImportError("framering.cluster needs Ray: pip install 'framering[cluster]'") from error

from framering.cluster.cluster import Cluster
from framering.cluster.figures import (
    ClusterMetrics,
    ClusterStreamMetrics,
    NodeMetrics,
    StreamState,
)
from framering.cluster.handle import ClusterStream
from framering.cluster.spec import StreamSpec
from framering.errors import ClusterError

__all__ = [
    "Cluster",
    "ClusterError",
    "ClusterMetrics",
    "ClusterStream",
    "ClusterStreamMetrics",
    "NodeMetrics",
    "StreamSpec",
    "StreamState",
]
