"""Argument checks shared by the engine's public calls; each raises an engine error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

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
    seconds = _as_float(value)
    if not 0 <= seconds < float("inf"):
        raise InvalidValueError(f"{what} must be a finite number of seconds >= 0, not {value}")
    return seconds


def _as_float(value: int | float) -> float:
    """``float(value)``, with an int too large for a float as infinity (``float(10**400)``
    raises ``OverflowError``, which is no engine error)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def positive_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTypeError(f"{what} must be a number of seconds")
    seconds = _as_float(value)
    if not 0 < seconds < float("inf"):
        raise InvalidValueError(f"{what} must be a positive finite number of seconds, not {value}")
    return seconds


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


# Weights a stream may have: a million to one between two streams is plenty, and keeps the
# round robin's arithmetic exact enough.
MIN_WEIGHT: Final = 1e-3
MAX_WEIGHT: Final = 1e3
# Fastest frame rate a live loop accepts.
MAX_FPS: Final = 1000.0


def check_weight(value: object) -> float:
    """A stream's weight: a number from ``MIN_WEIGHT`` to ``MAX_WEIGHT``."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not MIN_WEIGHT <= value <= MAX_WEIGHT
    ):
        raise InvalidValueError(
            f"weight must be a number from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}, not {value!r}"
        )
    return float(value)


def check_count(value: object, what: str, smallest: int) -> int | None:
    """None (no bound) or an int of at least ``smallest``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{what} must be None or an int, not {value!r}")
    if value < smallest:
        raise InvalidValueError(f"{what} must be None or at least {smallest}, not {value}")
    return value


def check_fps(value: object) -> float:
    """A live loop's frame rate: a number in (0, ``MAX_FPS``]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_FPS:
        raise InvalidValueError(f"fps must be a number in (0, {MAX_FPS:g}], not {value!r}")
    return float(value)
