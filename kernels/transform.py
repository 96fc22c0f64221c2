"""Layer transforms (crop, flip, rotate, scale, rotate by any angle) done with OpenCV into
buffers that are reused, and a cache that keeps their results until the source changes.

A transform is a fixed pipeline, applied in this order::

    crop -> flip -> rotate (90/180/270) -> scale to ``size`` -> rotate by ``angle`` about ``center``

Every step is one OpenCV call writing into a buffer given as ``dst``: the last step writes into
the caller's output, the others into scratch buffers the caller keeps. Nothing is allocated per
frame. Angles are clockwise in degrees (as in OBS and most video mixers); the arbitrary-angle
rotation keeps the picture's size, and what turns out of it is clipped while the uncovered
corners become transparent.

OpenCV interpolates each channel independently, so scaling a picture with straight alpha
darkens soft edges slightly (transparent pixels' colour bleeds in); layers whose edges matter
should be premultiplied (``premultiplied=True``), which interpolates correctly.
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np

from framering.kernels.validate import MAX_SIDE

INTERPOLATIONS: Final = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "bicubic": cv2.INTER_CUBIC,
}
FLIPS: Final = {"horizontal": 1, "vertical": 0, "both": -1}  # cv2.flip codes
ROTATIONS: Final = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if not low <= int(value) <= high:
        raise ValueError(f"{what} must lie in [{low}, {high}], not {int(value)}")
    return int(value)


def _check_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a float, not {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{what} must be finite, not {value!r}")
    return float(value)


def _pair(value: object, what: str) -> tuple[object, object]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{what} must be a pair, not {value!r}")
    return value[0], value[1]


@dataclass(frozen=True, slots=True)
class Transform:
    """What to do to a layer's picture before it is blended (see the module docstring).

    Attributes:
        crop: ``(x, y, width, height)`` of the source to keep; must lie inside the source.
        flip: ``"horizontal"``, ``"vertical"`` or ``"both"``.
        rotate: 0, 90, 180 or 270 degrees clockwise (swaps width and height for 90/270).
        size: ``(width, height)`` to scale to, after crop, flip and rotate.
        interpolation: ``"nearest"``, ``"bilinear"``, ``"area"`` or ``"bicubic"`` (scaling and
            the arbitrary-angle rotation).
        angle: degrees clockwise about ``center``; the picture keeps its size.
        center: ``(x, y)`` the ``angle`` turns about, in the scaled picture's pixels; the
            default is its centre.
    """

    crop: tuple[int, int, int, int] | None = None
    flip: str | None = None
    rotate: int = 0
    size: tuple[int, int] | None = None
    interpolation: str = "bilinear"
    angle: float = 0.0
    center: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.crop is not None:
            if not isinstance(self.crop, tuple | list) or len(self.crop) != 4:
                raise TypeError(f"crop must be (x, y, width, height), not {self.crop!r}")
            x, y, w, h = self.crop
            crop = (
                _check_int(x, "crop x", 0, MAX_SIDE - 1),
                _check_int(y, "crop y", 0, MAX_SIDE - 1),
                _check_int(w, "crop width", 1, MAX_SIDE),
                _check_int(h, "crop height", 1, MAX_SIDE),
            )
            object.__setattr__(self, "crop", crop)
        if self.flip is not None and self.flip not in FLIPS:
            raise ValueError(f"flip must be one of {', '.join(FLIPS)} or None, not {self.flip!r}")
        if isinstance(self.rotate, bool) or self.rotate not in (0, 90, 180, 270):
            raise ValueError(f"rotate must be 0, 90, 180 or 270, not {self.rotate!r}")
        object.__setattr__(self, "rotate", int(self.rotate))
        if self.size is not None:
            w, h = _pair(self.size, "size")
            size = (
                _check_int(w, "size width", 1, MAX_SIDE),
                _check_int(h, "size height", 1, MAX_SIDE),
            )
            object.__setattr__(self, "size", size)
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"not {self.interpolation!r}"
            )
        angle = _check_float(self.angle, "angle")
        object.__setattr__(self, "angle", angle)
        if self.center is not None:
            cx, cy = _pair(self.center, "center")
            center = (_check_float(cx, "center x"), _check_float(cy, "center y"))
            object.__setattr__(self, "center", center)

    @property
    def turns(self) -> bool:
        """Rotates by an angle that is not a multiple of 360 (corners become transparent)."""
        return self.angle % 360.0 != 0.0

    def keeps_opacity(self) -> bool:
        """An opaque picture stays opaque (every step but a real angle maps alpha 255 to 255)."""
        return not self.turns

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) this transform makes of a ``width`` x ``height`` picture.

        Raises ValueError if the crop does not lie inside the picture.
        """
        if self.crop is not None:
            x, y, w, h = self.crop
            if x + w > width or y + h > height:
                raise ValueError(f"crop {self.crop} does not lie inside a {width}x{height} picture")
            width, height = w, h
        if self.rotate in (90, 270):
            width, height = height, width
        if self.size is not None:
            width, height = self.size
        return width, height

    def steps(self) -> list[str]:
        """The OpenCV steps this transform runs, in order (a crop alone is only a copy)."""
        names = []
        if self.flip is not None:
            names.append("flip")
        if self.rotate:
            names.append("rotate")
        if self.size is not None:
            names.append("resize")
        if self.turns:
            names.append("warp")
        return names

    def matrix(self, width: int, height: int) -> np.ndarray:
        """The 2x3 affine matrix of ``angle`` about ``center`` for a ``width`` x ``height``
        picture (as ``cv2.getRotationMatrix2D``, which turns counter-clockwise)."""
        center = self.center if self.center is not None else ((width - 1) / 2, (height - 1) / 2)
        return cv2.getRotationMatrix2D(center, -self.angle, 1.0)


def _rgba_shape(width: int, height: int) -> tuple[int, int, int]:
    return (height, width, 4)


def _check_picture(src: np.ndarray) -> None:
    if not isinstance(src, np.ndarray) or src.dtype != np.uint8 or src.ndim != 3:
        raise TypeError("src must be an (h, w, 4) uint8 RGBA8 array")
    if src.shape[2] != 4:
        raise ValueError(f"src must have shape (h, w, 4), not {src.shape}")


class TransformBuffers:
    """The buffers one transform of one picture size writes: its scratch steps and output.

    ``out`` may be given (e.g. a view of shared memory) instead of allocated.
    """

    __slots__ = ("out", "scratch", "transform")

    def __init__(
        self,
        transform: Transform,
        width: int,
        height: int,
        allocate: Callable[[tuple[int, ...]], np.ndarray] | None = None,
        out: np.ndarray | None = None,
    ) -> None:
        allocate = allocate or (lambda shape: np.empty(shape, np.uint8))
        self.transform = transform
        out_w, out_h = transform.output_size(width, height)
        if out is None:
            out = allocate(_rgba_shape(out_w, out_h))
        elif (
            not isinstance(out, np.ndarray)
            or out.dtype != np.uint8
            or out.shape != _rgba_shape(out_w, out_h)
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise ValueError(
                f"out must be a writable C-contiguous {_rgba_shape(out_w, out_h)} uint8"
            )
        self.out = out
        # one scratch buffer per step but the last, each of that step's output size
        self.scratch: list[np.ndarray] = []
        if transform.crop is not None:
            width, height = transform.crop[2], transform.crop[3]
        for step in transform.steps()[:-1]:
            if step == "rotate" and transform.rotate in (90, 270):
                width, height = height, width
            elif step == "resize" and transform.size is not None:
                width, height = transform.size
            self.scratch.append(allocate(_rgba_shape(width, height)))

    @property
    def nbytes(self) -> int:
        return self.out.nbytes + sum(s.nbytes for s in self.scratch)


def apply_transform(src: np.ndarray, transform: Transform, buffers: TransformBuffers) -> np.ndarray:
    """Run ``transform`` on ``src`` (an RGBA8 picture) into ``buffers.out``; returns it.

    ``buffers`` must have been made for this transform and this size of picture.
    """
    _check_picture(src)
    if buffers.transform != transform:
        raise ValueError("buffers were made for another transform")
    height, width = src.shape[:2]
    expected = _rgba_shape(*transform.output_size(width, height))
    if buffers.out.shape != expected:
        raise ValueError(f"buffers were made for another picture size ({buffers.out.shape})")
    picture = src
    if transform.crop is not None:
        x, y, w, h = transform.crop
        picture = src[y : y + h, x : x + w]  # a view: OpenCV reads it in place
    steps = transform.steps()
    if not steps:
        np.copyto(buffers.out, picture)
        return buffers.out
    for i, step in enumerate(steps):
        dst = buffers.out if i == len(steps) - 1 else buffers.scratch[i]
        interpolation = INTERPOLATIONS[transform.interpolation]
        if step == "flip":
            cv2.flip(picture, FLIPS[transform.flip], dst=dst)  # type: ignore[index]
        elif step == "rotate":
            cv2.rotate(picture, ROTATIONS[transform.rotate], dst=dst)
        elif step == "resize":
            cv2.resize(picture, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=interpolation)
        else:
            h, w = picture.shape[:2]
            cv2.warpAffine(
                picture,
                transform.matrix(w, h),
                (w, h),
                dst=dst,
                flags=interpolation,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0, 0),
            )
        picture = dst
    return buffers.out


@dataclass
class _Entry:
    version: object
    buffers: TransformBuffers
    serial: int
    frame: int  # the last frame (``TransformCache.begin_frame``) that used it


# Bytes of transformed pictures one cache keeps: a dozen 1080p layers, or three at 4K with
# scratch. Beyond it the least recently used results are dropped (and recomputed if needed).
DEFAULT_CACHE_BYTES: Final = 128 * 1024 * 1024
# Entries kept whatever their size: an animated transform (a zoom, a moving crop) makes a new
# entry every frame, and the stale ones should go long before the byte budget is reached.
MAX_ENTRIES: Final = 32
# Buffers are allocated in sizes of a geometric series (about 9% apart) so a buffer given
# back by a dropped entry fits the next, slightly larger, picture of an animation.
_SIZE_STEPS_PER_DOUBLING: Final = 8


def _rounded_size(nbytes: int) -> int:
    steps = math.ceil(math.log2(max(nbytes, 4096)) * _SIZE_STEPS_PER_DOUBLING)
    return max(nbytes, math.ceil(2 ** (steps / _SIZE_STEPS_PER_DOUBLING)))


class TransformCache:
    """Transformed pictures kept per (key, transform) and reused while the source's version
    stays the same; a new version is transformed into the same buffers again.

    ``key`` names a picture (for the engine: a source and one of its buffers) and ``version``
    says which content it holds. Past ``MAX_ENTRIES`` entries or ``budget`` bytes, the least
    recently used entries are dropped and their memory is reused by the next new entry, so an
    animated transform settles into the same few buffers instead of allocating every frame.
    Entries used since the last :meth:`begin_frame` are never dropped. ``drops`` counts the
    entries dropped: a caller keeping references to outputs (tables of layer buffers) lets go
    of them when it changes, or their memory would outlive the cache's limits.
    """

    def __init__(self, budget: int = DEFAULT_CACHE_BYTES, max_entries: int = MAX_ENTRIES) -> None:
        self.budget = budget
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[object, Transform], _Entry] = OrderedDict()
        self._spare: list[np.ndarray] = []  # flat uint8 buffers of dropped entries
        self._bytes = 0
        self._serials = 0
        self._frame = 0
        self.drops = 0  # entries dropped so far: whoever holds their outputs must let go
        self.hits = 0
        self.misses = 0
        self.allocations = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held by entries (spare buffers awaiting reuse not included)."""
        return self._bytes

    def _allocate(self, shape: tuple[int, ...]) -> np.ndarray:
        need = math.prod(shape)
        fits = [i for i, b in enumerate(self._spare) if b.nbytes >= need]
        if fits:
            flat = self._spare.pop(min(fits, key=lambda i: self._spare[i].nbytes))
        else:
            self.allocations += 1
            flat = np.empty(_rounded_size(need), np.uint8)
        return flat[:need].reshape(shape)

    def _drop(self, cached: tuple[object, Transform]) -> None:
        entry = self._entries.pop(cached)
        self.drops += 1
        self._bytes -= entry.buffers.nbytes
        for array in (entry.buffers.out, *entry.buffers.scratch):
            base = array.base
            while isinstance(base, np.ndarray) and base.base is not None:
                base = base.base
            if isinstance(base, np.ndarray):
                self._spare.append(base)
        # spare memory is bounded like the entries: keep the largest few
        self._spare.sort(key=lambda b: b.nbytes, reverse=True)
        while sum(b.nbytes for b in self._spare) > self.budget // 2:
            self._spare.pop()

    def get(
        self, key: object, version: object, src: np.ndarray, transform: Transform
    ) -> tuple[np.ndarray, int]:
        """The transformed picture of ``src`` and its entry's serial number.

        The serial changes only when the entry's buffers do (never when the same buffers get
        new pixels), so ``(serial, ...)`` is a safe key for anything holding their addresses.
        """
        cached = (key, transform)
        entry = self._entries.get(cached)
        if entry is not None:
            expected = transform.output_size(src.shape[1], src.shape[0])
            if entry.buffers.out.shape[:2] != expected[::-1]:
                self._drop(cached)  # same key, another picture size
                entry = None
        if entry is None:
            self.misses += 1
            self._make_room()
            buffers = TransformBuffers(transform, src.shape[1], src.shape[0], self._allocate)
            apply_transform(src, transform, buffers)
            self._serials += 1
            entry = _Entry(version, buffers, self._serials, self._frame)
            self._entries[cached] = entry
            self._bytes += buffers.nbytes
            return buffers.out, entry.serial
        self._entries.move_to_end(cached)
        entry.frame = self._frame
        if entry.version != version:
            self.misses += 1
            apply_transform(src, transform, entry.buffers)
            entry.version = version
        else:
            self.hits += 1
        return entry.buffers.out, entry.serial

    def begin_frame(self) -> None:
        """Start a new frame: entries used from now on are kept until the next call.

        A frame may use more pictures than the cache's limits: its entries must all stay
        (an entry dropped in the middle of a frame would lend its memory to a later layer of
        the same frame), so the cache runs over its limits for that frame instead.
        """
        self._frame += 1

    def _make_room(self) -> None:
        """Drop least recently used entries, but none the current frame uses, until a new
        one fits the limits (or nothing more may go)."""
        while len(self._entries) >= self.max_entries or self._bytes >= self.budget:
            # frame 0: begin_frame was never called, so no entry is protected
            oldest = next(
                (k for k, e in self._entries.items() if e.frame != self._frame or not self._frame),
                None,
            )
            if oldest is None:
                return
            self._drop(oldest)

    def forget(self, key: object) -> None:
        """Drop every entry of ``key`` (its source is gone)."""
        for cached in [k for k in self._entries if k[0] == key]:
            self._drop(cached)
