"""Wire and kernel codes: one numbering per enum, both directions, pinned to what is stored."""

from __future__ import annotations

import numpy as np
import pytest

from framering import kernels
from framering.kernels import FrameFormat, LayerStack, PixelLayer, codes
from framering.kernels.yuv import MATRICES

# What the engine's ring header and ATTACH messages store: changing a number breaks every
# ring and every worker of another version, so these are spelled out, not derived.
STORED_FORMATS = {"rgba": 0, "bgra": 1, "bgr": 2, "i420": 3, "nv12": 4, "rgb": 5}
STORED_MATRICES = {"bt601": 0, "bt709": 1}
STORED_RANGES = {"limited": 0, "full": 1}


def test_format_codes_are_the_order_of_frame_format_and_the_stored_numbers() -> None:
    assert [fmt.code for fmt in FrameFormat] == list(range(len(FrameFormat)))
    assert {fmt.value: fmt.code for fmt in FrameFormat} == STORED_FORMATS
    assert tuple(fmt.value for fmt in FrameFormat) == codes.FORMAT_NAMES
    for fmt in FrameFormat:
        assert FrameFormat.from_code(fmt.code) is fmt
        assert codes.format_code(fmt.value) == fmt.code
        assert codes.format_name(fmt.code) == fmt.value
        assert getattr(codes, f"FORMAT_{fmt.name}") == fmt.code


def test_matrix_and_range_codes_go_both_ways() -> None:
    for name, code in STORED_MATRICES.items():
        assert codes.matrix_code(name) == code and codes.matrix_name(code) == name
    for name, code in STORED_RANGES.items():
        assert codes.range_code(name) == code and codes.range_name(code) == name
    assert tuple(STORED_MATRICES) == codes.MATRIX_NAMES
    assert tuple(STORED_RANGES) == codes.RANGE_NAMES
    assert (codes.MATRIX_BT601, codes.MATRIX_BT709) == (0, 1)
    assert (codes.RANGE_LIMITED, codes.RANGE_FULL) == (0, 1)


def test_the_yuv_tables_know_exactly_the_coded_matrices() -> None:
    assert tuple(MATRICES) == codes.MATRIX_NAMES


def test_a_code_read_from_a_record_may_be_a_numpy_integer() -> None:
    assert codes.matrix_name(np.uint8(1)) == "bt709"
    assert codes.range_name(np.int64(0)) == "limited"
    assert FrameFormat.from_code(np.uint8(3)) is FrameFormat.I420


@pytest.mark.parametrize(
    ("convert", "value"),
    [
        (codes.format_code, "yuyv"),
        (codes.format_code, 0),
        (codes.format_name, len(FrameFormat)),
        (codes.format_name, codes.NO_DELIVERY),
        (codes.matrix_code, "bt2020"),
        (codes.matrix_code, "BT709"),
        (codes.matrix_name, 2),
        (codes.matrix_name, -1),
        (codes.matrix_name, True),
        (codes.matrix_name, "1"),
        (codes.range_code, "tv"),
        (codes.range_code, None),
        (codes.range_name, 2),
        (codes.range_name, 1.0),
        (FrameFormat.from_code, 6),
    ],
)
def test_unknown_names_and_codes_raise_value_error_listing_the_choices(
    convert: object, value: object
) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        convert(value)  # type: ignore[operator]


def test_no_delivery_is_no_format_code() -> None:
    assert codes.NO_DELIVERY not in range(len(FrameFormat))


def test_layer_flags_are_distinct_bits_and_the_stack_uses_them() -> None:
    flags = [codes.LAYER_OPAQUE, codes.LAYER_PREMULTIPLIED, codes.LAYER_FRAME]
    assert flags == [1, 2, 4]
    opaque = np.full((2, 2, 4), 255, np.uint8)
    stack = LayerStack.prepare(4, 4, [PixelLayer(opaque), PixelLayer(opaque, premultiplied=True)])
    assert stack.flags.tolist() == [
        codes.LAYER_OPAQUE,
        codes.LAYER_OPAQUE | codes.LAYER_PREMULTIPLIED,
    ]


def test_the_engine_finds_the_codes_at_the_package_top() -> None:
    for name in (
        "codes",
        "matrix_code",
        "matrix_name",
        "range_code",
        "range_name",
        "MATRIX_NAMES",
        "RANGE_NAMES",
        "LAYER_OPAQUE",
        "LAYER_PREMULTIPLIED",
        "LAYER_FRAME",
    ):
        assert name in kernels.__all__
        assert getattr(kernels, name) is not None
