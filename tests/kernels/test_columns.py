"""LayerStack.from_buffers' one compiled pass packs exactly what the numpy checks it replaced
packed, and refuses exactly what they refused (with the same first error)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels import BlendMode, LayerStack
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
