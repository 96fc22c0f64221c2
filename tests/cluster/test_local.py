"""``Cluster()`` with no address: it starts a Ray of its own on this machine, and stops it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = """
import os, sys, time
import ray
from framering.cluster import Cluster
from tests.cluster.specs import SIZE, Recording, delivered, wait_for

def segments():
    return {n for n in os.listdir("/dev/shm") if n.startswith("framering")}


if __name__ == "__main__":
    path = sys.argv[1]
    before = segments()
    with Cluster() as cluster:
        assert ray.is_initialized() and len(cluster.node_ids) == 1
        show = cluster.open_stream("local", Recording(path), width=SIZE[0], height=SIZE[1])
        assert wait_for(lambda: len(delivered(path)) >= 15, 20)
        print("delivered", len(delivered(path)), show.stop().state)
    assert not ray.is_initialized()  # the Ray it started is shut down
    print("segments left", sorted(segments() - before))
"""


def test_a_cluster_without_address_runs_on_a_local_ray_it_starts_and_stops(
    tmp_path: pathlib.Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "local")],
        cwd=ROOT,
        # not the address of a Ray this process may have joined: a Ray of its own
        env={k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.split("\n")
    assert any(line.startswith("delivered") and "stopped" in line for line in out), done.stdout
    assert "segments left []" in out, done.stdout
