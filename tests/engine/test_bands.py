"""Bands: a frame cut into row bands for several workers gives the bytes of the whole frame,
damage included, and a worker killed under one band costs only that band's retry."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framering import Engine, InvalidValueError, Layer
from framering.bands import AUTO_MIN_PIXELS, MIN_BAND_ROWS, band_count, split_boxes
from framering.kernels import PixelLayer, composite_stack
from tests import faults
from tests.engine.test_damage import STEPS, H, Side, W, pictures, run_sequence


@st.composite
def disjoint_boxes(draw: st.DrawFn) -> np.ndarray:
    """Up to 4 boxes in separate columns of a 200 x 300 frame (disjoint by construction)."""
    boxes = []
    for column in range(draw(st.integers(1, 4))):
        x0 = column * 50 + draw(st.integers(0, 20))
        y0 = draw(st.integers(0, 280))
        boxes.append([x0, y0, x0 + draw(st.integers(1, 29)), draw(st.integers(y0 + 1, 300))])
    return np.array(boxes, np.int32)


@settings(max_examples=200, deadline=None)
@given(disjoint_boxes(), st.integers(1, 9))
def test_bands_cover_exactly_the_boxes_on_even_rows(boxes: np.ndarray, bands: int) -> None:
    cut = split_boxes(boxes, bands)
    assert 1 <= len(cut) <= bands
    covered = np.zeros((300, 200), np.int32)
    for band in cut:
        for x0, y0, x1, y1 in band.tolist():
            covered[y0:y1, x0:x1] += 1
    expected = np.zeros_like(covered)
    for x0, y0, x1, y1 in boxes.tolist():
        expected[y0:y1, x0:x1] = 1
    np.testing.assert_array_equal(covered, expected)  # every pixel once, nothing more
    tops = [int(band[:, 1].min()) for band in cut]
    bottoms = [int(band[:, 3].max()) for band in cut]
    assert all(b <= t for b, t in zip(bottoms, tops[1:], strict=False))  # bands in row order
    # where a box was cut between two bands, the cut is on an even row: 4:2:0 chroma rows
    # are never shared between two workers
    for band in cut:
        for x0, y0, x1, y1 in band.tolist():
            [original] = [b for b in boxes.tolist() if b[0] == x0 and b[2] == x1]
            if y0 != original[1]:
                assert y0 % 2 == 0
            if y1 != original[3]:
                assert y1 % 2 == 0


def numpy_split_boxes(boxes: np.ndarray, bands: int) -> list[np.ndarray]:
    """The cut as numpy made it before ``split_boxes`` was plain Python: the reference."""
    if bands <= 1 or not len(boxes):
        return [boxes]
    top, bottom = int(boxes[:, 1].min()), int(boxes[:, 3].max())
    area_per_row = np.zeros(bottom - top, np.int64)
    for x0, y0, x1, y1 in boxes.tolist():
        area_per_row[y0 - top : y1 - top] += x1 - x0
    cumulative = np.cumsum(area_per_row)
    targets = cumulative[-1] * np.arange(1, bands) / bands
    cuts = (top + np.searchsorted(cumulative, targets, side="left") + 1) // 2 * 2
    edges = [top]
    for cut in cuts.tolist():
        if cut - edges[-1] >= MIN_BAND_ROWS and bottom - cut >= MIN_BAND_ROWS:
            edges.append(cut)
    edges.append(bottom)
    result = []
    for a, b in itertools.pairwise(edges):
        clipped = boxes.copy()
        clipped[:, 1] = np.maximum(boxes[:, 1], a)
        clipped[:, 3] = np.minimum(boxes[:, 3], b)
        clipped = clipped[clipped[:, 1] < clipped[:, 3]]
        if len(clipped):
            result.append(np.ascontiguousarray(clipped))
    return result


@st.composite
def damage_boxes(draw: st.DrawFn) -> np.ndarray:
    """Disjoint boxes as damage gives them: up to 6 side by side or stacked in a 4K frame,
    some of them a row or two high, some sharing edges."""
    boxes: list[list[int]] = []
    y = 0
    for _ in range(draw(st.integers(1, 6))):
        y += draw(st.integers(0, 400))
        height = draw(st.sampled_from([1, 2, 3, 17, 300, 1080]))
        if y + height > 2160:
            break
        x = 0
        for _ in range(draw(st.integers(1, 3))):
            x += draw(st.integers(0, 900))
            width = draw(st.integers(1, 1200))
            if x + width > 3840:
                break
            boxes.append([x, y, x + width, y + height + draw(st.integers(0, 3))])
            x += width
        y = max(box[3] for box in boxes)
    return np.array(boxes or [[0, 0, 3840, 2160]], np.int64)


@settings(max_examples=300, deadline=None)
@given(damage_boxes(), st.integers(0, 17))
def test_bands_are_cut_where_the_numpy_cut_put_them(boxes: np.ndarray, bands: int) -> None:
    got = split_boxes(boxes, bands)
    expected = numpy_split_boxes(boxes, bands)
    assert len(got) == len(expected)
    for band, reference in zip(got, expected, strict=True):
        assert band.dtype == reference.dtype and band.flags.c_contiguous
        np.testing.assert_array_equal(band, reference)


def test_auto_cuts_only_big_damage_on_an_idle_pool() -> None:
    assert band_count("auto", AUTO_MIN_PIXELS, idle=2, ready=2, waiting=0) == 2
    assert band_count("auto", AUTO_MIN_PIXELS - 1, idle=2, ready=2, waiting=0) == 1
    assert band_count("auto", AUTO_MIN_PIXELS, idle=1, ready=2, waiting=0) == 1
    assert band_count("auto", AUTO_MIN_PIXELS, idle=2, ready=2, waiting=3) == 1
    assert band_count("bands", 10, idle=0, ready=3, waiting=5) == 3
    assert band_count("frame", 10**9, idle=8, ready=8, waiting=0) == 1
    with pytest.raises(InvalidValueError, match="split"):
        Engine(64, 36, split="rows")  # type: ignore[arg-type]


@pytest.mark.parametrize("output", ["rgba", "nv12"])
def test_banded_frames_are_byte_identical_to_whole_ones_damage_included(output: str) -> None:
    with (
        Engine(W, H, slots=4, workers=2, output=output, split="bands") as banded,
        Engine(W, H, slots=4, workers=1, output=output, damage=False) as plain,
    ):
        bands, whole = Side(banded, pictures(2)), Side(plain, pictures(2))

        @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.integers(0, 2**32 - 1), st.lists(st.sampled_from(STEPS), min_size=1, max_size=12))
        def sequences(seed: int, steps: list[str]) -> None:
            try:
                run_sequence(bands, whole, seed, steps, output == "rgba")
            finally:
                for side in (bands, whole):
                    while side.held:
                        side.held.pop().release()

        sequences()
        assert banded.metrics().banded_frames > 0
        assert banded.metrics().frames_failed == plain.metrics().frames_failed == 0
        bands.close()
        whole.close()


def test_a_worker_killed_under_one_band_retries_only_that_band(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    width, height = 640, 360
    background = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    overlay = rng.integers(0, 256, (200, 300, 4), dtype=np.uint8)
    expected = np.empty((height, width, 4), np.uint8)
    composite_stack(
        expected, [PixelLayer(background), PixelLayer(overlay, x=40, y=30, opacity=0.7)]
    )
    with Engine(
        width,
        height,
        workers=2,
        split="bands",
        initializer=faults.install,
        initargs=("sigkill", str(tmp_path), "once"),
    ) as eng:
        layers = [
            Layer(eng.upload(background)),
            Layer(eng.upload(overlay), x=40, y=30, opacity=0.7),
        ]
        np.testing.assert_array_equal(eng.render(layers, timeout=60), expected)
        metrics = eng.metrics()
        assert metrics.banded_frames == 1 and metrics.worker_restarts == 1
        assert metrics.retries == 1  # of the frame's two bands, only the dead worker's again
        assert metrics.frames_completed == 1 and metrics.frames_failed == 0


def test_auto_bands_a_4k_frame_on_idle_workers_and_not_a_small_change() -> None:
    width, height = 3840, 2160
    with Engine(width, height, slots=2, workers=2) as eng:
        picture = eng.upload(np.full((height, width, 4), 120, np.uint8))
        logo = eng.upload(np.full((64, 64, 4), 200, np.uint8))
        whole = eng.render([Layer(picture), Layer(logo, x=10, y=10)])
        assert eng.metrics().banded_frames == 1  # the whole frame: half of it and more
        for x in (12, 14):  # the same slot again: only the logo's boxes are damaged
            moved = eng.render([Layer(picture), Layer(logo, x=x, y=10)])
        assert eng.metrics().banded_frames == 1  # small changes go to one worker whole
        with eng.acquire():  # holds that slot: the other one, never used, is whole again
            eng.render([Layer(picture), Layer(logo, x=16, y=10)])
        assert eng.metrics().banded_frames == 2
        assert eng.metrics().damaged_fraction < 1.0
        np.testing.assert_array_equal(moved[200:], whole[200:])
