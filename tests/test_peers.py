"""The kernel benchmark's peers (cairo, Skia) make the workload's frame, or say they cannot."""

from __future__ import annotations

import numpy as np
import pytest

from framering.benchmarks import peers
from framering.kernels import PixelLayer
from framering.kernels.reference import composite_stack_reference, premultiplied_difference
from framering.kernels.workloads import Workload


def _workload() -> Workload:
    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, (30, 40, 4), dtype=np.uint8) for _ in range(3)]
    pictures[0][..., 3] = 255
    layers = (
        PixelLayer(pictures[0], x=-5, y=-3),
        PixelLayer(pictures[1], x=20, y=10, opacity=0.6),
        PixelLayer(pictures[2], x=50, y=30, opacity=1.0),  # half past the edges
    )
    return Workload("tiny", 64, 48, layers)


@pytest.mark.parametrize("peer", ["cairo", "skia"])
def test_a_peer_composites_the_workload_within_8_bit_premultiplied_rounding(peer: str) -> None:
    workload = _workload()
    compositor = getattr(peers, peer)(workload)
    if compositor is None:
        pytest.skip(f"{peer} is not installed here")
    run, frame = compositor
    run()
    run()  # the frame is made from scratch each time
    reference = composite_stack_reference(workload.width, workload.height, workload.layers)
    assert premultiplied_difference(frame(), reference).max() <= 3.0


def test_premultiplying_and_back_keeps_opaque_pixels_and_reorders_channels() -> None:
    pixels = np.array([[[10, 20, 30, 255], [200, 100, 50, 0]]], np.uint8)
    bgra = peers.premultiplied(pixels, peers.CAIRO_ORDER)
    assert bgra.tolist() == [[[30, 20, 10, 255], [0, 0, 0, 0]]]
    assert peers.straight_rgba(bgra, peers.CAIRO_ORDER).tolist() == [
        [[10, 20, 30, 255], [0, 0, 0, 0]]
    ]
