"""LayerStack.from_buffers' one compiled pass packs exactly what the numpy checks it replaced
packed, and refuses exactly what they refused (with the same first error)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels import BlendMode, LayerStack, PixelLayer, composite_stack
from framering.kernels.codes import LAYER_PREMULTIPLIED
from framering.kernels.layers import MIN_OPACITY, BufferTable
from framering.kernels.validate import INT32_MAX, INT32_MIN

W, H = 40, 30
_N_MODES = len(BlendMode)


def numpy_pack(
    table: BufferTable,
    index: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    opacity: np.ndarray,
    modes: np.ndarray,
    premultiplied: np.ndarray,
) -> tuple[str | None, dict[str, np.ndarray]]:
    """The checks and packing from_buffers did with numpy before the compiled pass."""
    if len(index):
        if index.min() < 0 or index.max() >= len(table):
            return "index values", {}
        for column in (x, y):
            if column.min() < INT32_MIN or column.max() > INT32_MAX:
                return "int32", {}
        if not (np.isfinite(opacity).all() and opacity.min() >= 0.0 and opacity.max() <= 1.0):
            return "finite floats", {}
        if modes.min() < 0 or modes.max() >= _N_MODES:
            return "BlendMode values", {}
    index = index.astype(np.int64)
    w, h = table.widths[index], table.heights[index]
    x, y = x.astype(np.int64), y.astype(np.int64)
    keep = np.flatnonzero((opacity >= MIN_OPACITY) & (x < W) & (x + w > 0) & (y < H) & (y + h > 0))
    index = index[keep]
    return None, {
        "addresses": table.addresses[index],
        "geometry": np.stack([x[keep], y[keep], w[keep], h[keep]], axis=1),
        "opacity": opacity[keep].astype(np.float64),
        "modes": modes[keep].astype(np.int64),
        "flags": table.flags[index] | np.where(premultiplied[keep], LAYER_PREMULTIPLIED, 0),
    }


_TABLE = BufferTable(
    [np.zeros((h, w, 4), np.uint8) for w, h in ((5, 4), (40, 30), (1, 1), (17, 9))],
    [True, False, False, True],
)
_POSITIONS = st.one_of(
    st.integers(-60, 60), st.sampled_from([INT32_MIN, INT32_MAX, INT32_MAX + 1, -(2**40)])
)
_OPACITY = st.one_of(
    st.floats(0.0, 1.0), st.sampled_from([0.0, 1e-30, 1.0, 1.5, -0.1, float("nan"), float("inf")])
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-1, 4),
            _POSITIONS,
            _POSITIONS,
            _OPACITY,
            st.integers(-1, _N_MODES),
            st.booleans(),
        ),
        max_size=12,
    ),
    st.sampled_from([np.int32, np.int64]),
)
def test_the_compiled_pass_packs_and_refuses_as_the_numpy_checks_did(
    rows: list[tuple[int, int, int, float, int, bool]], position_type: type
) -> None:
    index = np.array([r[0] for r in rows], np.int64)
    fits = [INT32_MIN <= r[1] <= INT32_MAX and INT32_MIN <= r[2] <= INT32_MAX for r in rows]
    dtype = position_type if all(fits) else np.int64  # int32 columns cannot hold the others
    x = np.array([r[1] for r in rows], dtype)
    y = np.array([r[2] for r in rows], dtype)
    opacity = np.array([r[3] for r in rows], np.float64)
    modes = np.array([r[4] for r in rows], np.int64)
    premultiplied = np.array([r[5] for r in rows], bool)
    error, expected = numpy_pack(_TABLE, index, x, y, opacity, modes, premultiplied)
    columns = dict(index=index, x=x, y=y, opacity=opacity, modes=modes)
    if error is not None:
        with pytest.raises(ValueError, match=error):
            LayerStack.from_buffers(W, H, _TABLE, premultiplied=premultiplied, **columns)
        return
    stack = LayerStack.from_buffers(W, H, _TABLE, premultiplied=premultiplied, **columns)
    for name, column in expected.items():
        got = getattr(stack, name)
        assert got.dtype == column.dtype and got.shape == column.shape, name
        np.testing.assert_array_equal(got, column, err_msg=name)
        assert not got.flags.writeable and got.flags.c_contiguous


def test_strided_record_columns_pack_as_contiguous_ones() -> None:
    records = np.zeros(3, [("x", "<i4"), ("y", "<i4"), ("opacity", "<f8"), ("mode", "u1")])
    records["x"], records["y"], records["opacity"] = [-3, 10, 50], [2, -40, 5], [1.0, 0.5, 0.7]
    index = np.array([1, 0, 3])
    strided = LayerStack.from_buffers(
        W, H, _TABLE, index=index, x=records["x"], y=records["y"], opacity=records["opacity"],
        modes=records["mode"], premultiplied=np.zeros(3, bool),
    )  # fmt: skip
    plain = LayerStack.from_buffers(
        W, H, _TABLE, index=index, x=records["x"].astype(np.int64), y=records["y"].copy(),
        opacity=records["opacity"].copy(), modes=np.zeros(3, np.int64),
        premultiplied=np.zeros(3, bool),
    )  # fmt: skip
    np.testing.assert_array_equal(strided.geometry, plain.geometry)
    np.testing.assert_array_equal(strided.addresses, plain.addresses)
    assert len(strided) == 1  # the second is above the frame, the third right of it


def test_unsigned_positions_too_large_for_int32_are_refused_not_wrapped() -> None:
    one = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="int32"):
        LayerStack.from_buffers(
            W, H, _TABLE, index=one, x=np.array([2**64 - 1], np.uint64), y=one,
            opacity=np.ones(1), modes=one, premultiplied=np.zeros(1, bool),
        )  # fmt: skip


# buffer, x, y, opacity; then a move (dx, dy) and a new opacity; blend mode, premultiplied
Row = tuple[int, int, int, float, int, int, float, int, bool]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(-10, 45),
            st.integers(-10, 35),
            st.sampled_from([0.3, 1.0, MIN_OPACITY]),
            st.integers(-60, 60),
            st.integers(-50, 50),
            st.one_of(st.floats(MIN_OPACITY, 1.0), st.just(1.0), st.just(0.0)),
            st.integers(0, _N_MODES - 1),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_a_stack_placed_anew_composites_as_one_packed_there(
    rows: list[Row], seed: int, fade_only: bool
) -> None:
    rng = np.random.default_rng(seed)
    buffers = [rng.integers(0, 256, (h, w, 4), dtype=np.uint8) for w, h in ((5, 4), (40, 30))]
    buffers += [np.full((1, 1, 4), 255, np.uint8), rng.integers(0, 256, (9, 17, 4), np.uint8)]
    buffers[1][..., 3] = 255  # one opaque picture, so that opacity 1 makes it a copy

    def shows(r: Row, x: int, y: int) -> bool:
        h, w = buffers[r[0]].shape[:2]
        return x < W and x + w > 0 and y < H and y + h > 0

    def place(r: Row) -> tuple[int, int]:
        return (r[1], r[2]) if fade_only else (r[1] + r[4], r[2] + r[5])

    def layer(r: Row, after: bool) -> PixelLayer:
        x, y = place(r) if after else (r[1], r[2])
        return PixelLayer(buffers[r[0]], x=x, y=y, opacity=r[6] if after else r[3],
                          blend=BlendMode(r[7]), premultiplied=r[8])  # fmt: skip

    before = LayerStack.prepare(W, H, [layer(r, False) for r in rows])
    kept = [r for r in rows if shows(r, r[1], r[2])]
    assert len(before) == len(kept)
    moved = [place(r) for r in kept]
    opacity = [r[6] for r in kept]
    if any(o < MIN_OPACITY for o in opacity) or not all(
        shows(r, x, y) for r, (x, y) in zip(kept, moved, strict=True)
    ):
        with pytest.raises(ValueError, match="prepare a new one"):
            if fade_only:
                before.with_opacity(opacity)
            else:
                before.with_placement([m[0] for m in moved], [m[1] for m in moved], opacity)
        return
    if fade_only:
        after = before.with_opacity(opacity)
        assert after.geometry is before.geometry
    else:
        after = before.with_placement([m[0] for m in moved], [m[1] for m in moved], opacity)
    for shared in ("addresses", "modes", "flags"):
        assert getattr(after, shared) is getattr(before, shared)
    assert not after.opacity.flags.writeable and not after.geometry.flags.writeable
    expected = np.empty((H, W, 4), np.uint8)
    composite_stack(expected, [layer(r, True) for r in kept])
    got = np.empty((H, W, 4), np.uint8)
    composite_stack(got, after)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "opacity", [[0.5], [0.5, 0.5, 0.5], [0.0, 0.5], [float("nan"), 0.5], [1.5, 0.5], [-0.2, 0.5]]
)
def test_new_opacities_that_would_drop_a_layer_or_are_not_one_per_layer_are_refused(
    opacity: list[float],
) -> None:
    stack = LayerStack.from_buffers(
        W, H, _TABLE, index=np.array([0, 1]), x=np.zeros(2, np.int64), y=np.zeros(2, np.int64),
        opacity=np.ones(2), modes=np.zeros(2, np.int64), premultiplied=np.zeros(2, bool),
    )  # fmt: skip
    with pytest.raises(ValueError, match="opacity"):
        stack.with_opacity(opacity)
    with pytest.raises(ValueError, match="opacity"):
        stack.with_placement([0, 0], [0, 0], opacity)
    with pytest.raises(ValueError, match="one value per layer"):
        stack.with_placement([0], [0, 0], [0.5, 0.5])
    with pytest.raises(AttributeError, match="immutable"):
        stack.with_opacity([0.5, 0.5]).opacity = np.ones(2)
