"""Pixels worked out by hand, and agreement with Pillow's ``Image.alpha_composite``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from PIL import Image

from framering.kernels import PixelLayer, clear, composite_layer, composite_stack, fill
from framering.kernels.reference import (
    composite_layer_reference,
    composite_stack_reference,
    premultiplied_difference,
)
from tests.layers import frames, layers


def one_pixel(rgba: tuple[int, int, int, int]) -> np.ndarray:
    return np.array([[rgba]], dtype=np.uint8)


# (destination, source, opacity, blend, expected), each worked out from the spec's formulas
HAND_COMPUTED = [
    # opaque red at opacity 0.5 over opaque blue: Co = Cb + 0.5 (Cs - Cb) = 127.5 -> 128
    ((0, 0, 255, 255), (255, 0, 0, 255), 0.5, "normal", (128, 0, 128, 255)),
    # half-transparent red over transparent black: the source itself
    ((0, 0, 0, 0), (255, 0, 0, 128), 1.0, "normal", (255, 0, 0, 128)),
    # as = 128/255 over opaque white: G = 255 (1 - 128/255) = 127
    ((255, 255, 255, 255), (255, 0, 0, 128), 1.0, "normal", (255, 127, 127, 255)),
    # semi over semi: ao = a + a (1 - a) = 0.75196 -> 192 (191.75);
    # R = a / ao = 0.66754 -> 170 (170.2); B = a (1 - a) / ao = 0.33246 -> 85 (84.8)
    ((0, 0, 255, 128), (255, 0, 0, 128), 1.0, "normal", (170, 0, 85, 192)),
    # multiply over opaque: R = 1 * 128/255 -> 128; B = (100/255)(128/255) * 255 = 50.2 -> 50
    ((255, 0, 100, 255), (128, 128, 128, 255), 1.0, "multiply", (128, 0, 50, 255)),
    # screen: 2 (100/255) - (100/255)^2 = 0.63053 -> 160.8 -> 161
    ((100, 100, 100, 255), (100, 100, 100, 255), 1.0, "screen", (161, 161, 161, 255)),
    # add: R = min(1, (128/255)(100/255) + 100/255) = 0.58900 -> 150.2 -> 150,
    #      G = (128/255)(50/255) + 100/255 = 0.49058 -> 125.1 -> 125, alpha saturates
    ((100, 100, 100, 255), (100, 50, 0, 128), 1.0, "add", (150, 125, 100, 255)),
    # source at opacity 1 replaces, alpha included
    ((200, 200, 200, 255), (10, 20, 30, 40), 1.0, "source", (10, 20, 30, 40)),
    # difference of opaque colours: |200 - 50| = 150
    ((200, 10, 0, 255), (50, 60, 0, 255), 1.0, "difference", (150, 50, 0, 255)),
    # a fully transparent source pixel leaves the destination alone
    ((1, 2, 3, 4), (255, 255, 255, 0), 1.0, "normal", (1, 2, 3, 4)),
]


@pytest.mark.parametrize(("dst", "src", "opacity", "blend", "expected"), HAND_COMPUTED)
def test_hand_computed_pixel(
    dst: tuple[int, int, int, int],
    src: tuple[int, int, int, int],
    opacity: float,
    blend: str,
    expected: tuple[int, int, int, int],
) -> None:
    frame = one_pixel(dst)
    layer = PixelLayer(one_pixel(src), opacity=opacity, blend=blend)
    composite_layer(frame, layer)
    assert tuple(frame[0, 0]) == expected
    assert tuple(composite_layer_reference(one_pixel(dst), layer)[0, 0]) == expected


def test_premultiplied_layer_equals_its_straight_twin() -> None:
    # straight (255, 0, 0, 128) is premultiplied (128, 0, 0, 128)
    frame = one_pixel((0, 0, 255, 255))
    composite_layer(frame, PixelLayer(one_pixel((128, 0, 0, 128)), premultiplied=True))
    # R = 255 as = 128, B = 255 (1 - as) = 127, exactly as the straight pixel gives
    assert tuple(frame[0, 0]) == (128, 0, 127, 255)
    straight = one_pixel((0, 0, 255, 255))
    composite_layer(straight, PixelLayer(one_pixel((255, 0, 0, 128))))
    np.testing.assert_array_equal(frame, straight)


def test_layer_clipped_at_every_edge() -> None:
    frame = np.zeros((4, 5, 4), np.uint8)
    red = np.zeros((3, 3, 4), np.uint8)
    red[...] = (255, 0, 0, 255)
    composite_stack(frame, [PixelLayer(red, x=-1, y=-1), PixelLayer(red, x=3, y=2)])
    covered = frame[..., 3] == 255
    expected = np.zeros((4, 5), bool)
    expected[0:2, 0:2] = True
    expected[2:4, 3:5] = True
    np.testing.assert_array_equal(covered, expected)


def test_layer_fully_outside_changes_nothing() -> None:
    frame = np.full((4, 4, 4), 9, np.uint8)
    tile = np.full((2, 2, 4), 255, np.uint8)
    for x, y in [(-2, 0), (4, 0), (0, -2), (0, 4), (-100, -100)]:
        composite_layer(frame, PixelLayer(tile, x=x, y=y))
    assert (frame == 9).all()


def test_fill_and_clear_rectangles() -> None:
    frame = np.zeros((6, 8, 4), np.uint8)
    fill(frame, (1, 2, 3, 4))
    assert (frame == (1, 2, 3, 4)).all()
    fill(frame, (9, 9, 9, 9), rect=(-2, 4, 5, 10))
    assert (frame[4:, :3] == 9).all() and (frame[:4] == (1, 2, 3, 4)).all()
    assert (frame[4:, 3:] == (1, 2, 3, 4)).all()
    clear(frame, rect=(6, 0, 2, 2))
    assert (frame[:2, 6:] == 0).all() and (frame[:2, :6] == (1, 2, 3, 4)).all()
    fill(frame, (5, 5, 5, 5), rows=(1, 3))
    assert (frame[1:3] == 5).all() and (frame[0, :6] == (1, 2, 3, 4)).all()


def test_clear_stack_ignores_previous_frame_content() -> None:
    frame = np.full((3, 3, 4), 77, np.uint8)
    composite_stack(frame, [])
    assert (frame == 0).all()


def pillow_over(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    return np.asarray(Image.alpha_composite(Image.fromarray(dst), Image.fromarray(src)))


@settings(max_examples=200, deadline=None)
@given(frames())
def test_normal_agrees_with_pillow_alpha_composite(frame: np.ndarray) -> None:
    rng = np.random.default_rng(int(frame.sum()))
    source = rng.integers(0, 256, frame.shape, dtype=np.uint8)
    got = frame.copy()
    composite_layer(got, PixelLayer(source))
    assert premultiplied_difference(got, pillow_over(frame, source)).max() <= 1.0 + 1e-9


@settings(max_examples=100, deadline=None)
@given(frames().flatmap(lambda f: layers(f.shape[1], f.shape[0]).map(lambda layer: (f, layer))))
def test_layer_pixels_are_never_written(case: tuple[np.ndarray, PixelLayer]) -> None:
    frame, layer = case
    before = layer.pixels.copy()
    layer.pixels.flags.writeable = False  # read-only sources are accepted, and stay intact
    composite_layer(frame, layer)
    np.testing.assert_array_equal(layer.pixels, before)


def test_occluded_background_is_skipped_but_layers_between_still_show() -> None:
    """The row-start copy skips what later copies cover; everything else stays exact."""
    rng = np.random.default_rng(3)
    background = rng.integers(0, 256, (30, 50, 4), dtype=np.uint8)
    background[..., 3] = 255
    camera = background[:10, :12].copy()
    camera[..., 0] = 7
    soft = rng.integers(0, 256, (20, 50, 4), dtype=np.uint8)
    few = [PixelLayer(background), PixelLayer(soft, x=-5, y=3, opacity=0.5)]
    few += [PixelLayer(camera, x=4, y=2), PixelLayer(camera, x=20, y=5, opacity=1.0)]
    many = few + [PixelLayer(camera, x=3 * i, y=i) for i in range(8)]  # > MAX_OCCLUDERS
    for stack in (few, many):
        frame = np.full((30, 50, 4), 99, np.uint8)  # stale content must not leak through
        composite_stack(frame, stack)
        want = composite_stack_reference(50, 30, stack)
        assert premultiplied_difference(frame, want).max() <= 1.0 + 1e-9


def test_exact_halves_round_up_in_kernel_and_reference() -> None:
    # R after the second layer is exactly 13/2 = 6.5: 195 * (17/255) * 0.5; it must be 7, or
    # color-dodge (B = Cb / (1 - Cs) = 25.5 Cb) turns the 1-unit slip into 26
    layers = [
        PixelLayer(one_pixel((0, 0, 0, 255))),
        PixelLayer(one_pixel((195, 0, 0, 17)), opacity=0.5),
        PixelLayer(one_pixel((245, 0, 0, 255)), blend="color-dodge"),
    ]
    frame = one_pixel((0, 0, 0, 0))
    composite_stack(frame, layers[:2])
    assert frame[0, 0, 0] == 7
    assert composite_stack_reference(1, 1, layers[:2])[0, 0, 0] == 7
    composite_stack(frame, layers)
    np.testing.assert_array_equal(frame, composite_stack_reference(1, 1, layers))


def test_a_half_way_crossfade_rounds_exact_halves_up() -> None:
    # at opacity 0.5 an opaque layer over an opaque backdrop is exactly (c + Cs) / 2: every
    # odd sum is an exact half, which rounds up (round-half-to-even would give 126 and 0)
    for backdrop, layer, expected in (
        ((0, 0, 253, 255), (255, 0, 0, 255), (128, 0, 127, 255)),
        ((0, 0, 0, 255), (1, 1, 1, 255), (1, 1, 1, 255)),
    ):
        layers = [PixelLayer(one_pixel(backdrop)), PixelLayer(one_pixel(layer), opacity=0.5)]
        frame = one_pixel((0, 0, 0, 0))
        composite_stack(frame, layers)
        assert tuple(frame[0, 0]) == expected
        assert tuple(composite_stack_reference(1, 1, layers)[0, 0]) == expected


def test_a_stack_of_many_faint_layers_is_rounded_once() -> None:
    """Fifty layers of grey 128 at opacity 0.02 over black: exactly 128 (1 - 0.98^50) = 81.4.
    Rounded after every layer, steps below half a level would be lost or gained each time
    (a frame held in RGBA8 between layers ends at 78)."""
    black = np.zeros((1, 64, 4), np.uint8)
    black[..., 3] = 255
    grey = np.full((1, 64, 4), 128, np.uint8)
    grey[..., 3] = 255
    stack = [PixelLayer(black)] + [PixelLayer(grey, opacity=0.02) for _ in range(50)]
    frame = np.empty((1, 64, 4), np.uint8)
    composite_stack(frame, stack)
    exact = 128 * (1 - 0.98**50)
    assert np.all(frame[..., :3] == round(exact)) and np.all(frame[..., 3] == 255)
