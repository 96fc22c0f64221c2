"""Argument checks shared by the engine's public calls; each raises an engine error."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from framering.errors import InvalidTypeError, InvalidValueError
from framering.kernels import MATRIX_NAMES, RANGE_NAMES, FrameFormat

T = TypeVar("T")


def checked(check: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a kernels validator and re-raise its complaint as an engine error."""
    try:
        return check(*args, **kwargs)
    except TypeError as error:
        raise InvalidTypeError(str(error)) from error
    except ValueError as error:
        raise InvalidValueError(str(error)) from error


def positive_int(value: object, what: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{what} must be an int, not {type(value).__name__}")
    if not 1 <= value <= limit:
        raise InvalidValueError(f"{what} must be between 1 and {limit}, not {value}")
    return value


def check_timeout(value: object, what: str = "timeout") -> float | None:
    """None (wait for ever) or a finite number of seconds >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTypeError(f"{what} must be None or a number of seconds, not {value!r}")
    if not 0 <= float(value) < float("inf"):
        raise InvalidValueError(f"{what} must be a finite number of seconds >= 0, not {value}")
    return float(value)


def positive_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTypeError(f"{what} must be a number of seconds")
    if not 0 < float(value) < float("inf"):
        raise InvalidValueError(f"{what} must be a positive finite number of seconds, not {value}")
    return float(value)


def pixel_format(
    value: object, what: str, yuv_matrix: object, yuv_range: object, width: int, height: int
) -> FrameFormat:
    """A :class:`FrameFormat` by name, with a YUV matrix and range, for pictures of a size."""
    try:
        fmt = FrameFormat(value)
    except ValueError:
        formats = ", ".join(f.value for f in FrameFormat)
        raise InvalidValueError(f"{what} must be one of {formats}, not {value!r}") from None
    if yuv_matrix not in MATRIX_NAMES or yuv_range not in RANGE_NAMES:
        raise InvalidValueError(
            f"yuv_matrix must be one of {', '.join(MATRIX_NAMES)} and yuv_range one of "
            f"{', '.join(RANGE_NAMES)}, not {yuv_matrix!r} and {yuv_range!r}"
        )
    if fmt.yuv420 and (width % 2 or height % 2):
        raise InvalidValueError(f"{fmt.value} needs an even width and height, not {width}x{height}")
    return fmt
