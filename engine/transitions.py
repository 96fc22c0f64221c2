"""Transitions between two scenes, as layer stacks: crossfade and wipe by a progress value.

A scene here is anything a layer can show: a finished frame (``FrameSlot``, typically the
two scenes rendered into their own slots this tick), an uploaded ``Source`` or a
``LiveSource``. The helpers only build layers; the frame that shows them is composited like
any other, and the scenes it reads stay pinned until it is done::

    a = render(scene_a); b = render(scene_b)          # two finished slots
    out.submit(crossfade(a, b, progress=t / duration))
"""

from __future__ import annotations

from typing import Final, Literal

from framering.errors import InvalidTypeError, InvalidValueError
from framering.kernels.transform import Transform
from framering.kernels.validate import check_opacity
from framering.layer import Layer
from framering.slots import FrameSlot
from framering.sources import LiveSource, Source
from framering.validation import checked

Picture = Source | LiveSource | FrameSlot
Direction = Literal["left", "right", "up", "down"]
DIRECTIONS: Final = ("left", "right", "up", "down")


def _progress(value: object) -> float:
    return checked(check_opacity, value, "progress")


def _size(picture: Picture) -> tuple[int, int]:
    if isinstance(picture, FrameSlot):
        return picture.size
    if isinstance(picture, Source | LiveSource):
        return picture.width, picture.height
    raise InvalidTypeError(
        f"a transition shows Sources, LiveSources or FrameSlots, not {type(picture).__name__}"
    )


def crossfade(a: Picture, b: Picture, progress: float) -> list[Layer]:
    """``a`` fading into ``b``: ``b`` drawn over ``a`` with opacity ``progress``.

    Exact (each pixel ``(1 - p) a + p b``) when ``a`` is opaque, as full scenes usually are;
    over a transparent ``a`` it is ``b`` at opacity ``p`` over ``a``, not a mix of the two.
    """
    p = _progress(progress)
    _size(a), _size(b)
    if p == 0.0:
        return [Layer(a)]
    if p == 1.0:  # a stays under b: where b is transparent, a shows, as at 0.999
        return [Layer(a), Layer(b)]
    return [Layer(a), Layer(b, opacity=p)]


def wipe(a: Picture, b: Picture, progress: float, direction: Direction = "right") -> list[Layer]:
    """``b`` revealed over ``a`` behind an edge moving in ``direction`` as ``progress`` goes
    from 0 (all ``a``) to 1 (all ``b``). ``"right"`` starts at the left edge.

    The revealed part of ``b`` is a crop, which the worker copies without a pass over the rest.
    """
    p = _progress(progress)
    if direction not in DIRECTIONS:
        raise InvalidValueError(
            f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}"
        )
    _size(a)
    width, height = _size(b)
    horizontal = direction in ("left", "right")
    shown = round(p * (width if horizontal else height))
    if shown == 0:
        return [Layer(a)]
    if shown == (width if horizontal else height):
        return [Layer(a), Layer(b)]
    if direction == "right":
        x, y, crop = 0, 0, (0, 0, shown, height)
    elif direction == "left":
        x, y, crop = width - shown, 0, (width - shown, 0, shown, height)
    elif direction == "down":
        x, y, crop = 0, 0, (0, 0, width, shown)
    else:
        x, y, crop = 0, height - shown, (0, height - shown, width, shown)
    return [Layer(a), Layer(b, x=x, y=y, transform=Transform(crop=crop))]
