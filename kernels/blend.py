"""Blend modes: their names, and the per-channel formulas of W3C Compositing Level 1.

A blend mode says how a layer's colour mixes with the colour under it, B(Cb, Cs); the result is
then composited with source-over, exactly as the spec's section 5.8 defines::

    Cs' = (1 - ab) * Cs + ab * B(Cb, Cs)          # the blended source colour
    co  = as * Cs' + ab * (1 - as) * Cb           # premultiplied result colour
    ao  = as + ab * (1 - as)                      # result alpha
    Co  = co / ao                                 # straight result colour

Two modes are Porter-Duff operators rather than blend functions:

- ``add`` (the spec's ``plus-lighter``), on premultiplied values and saturating:
  ``co = min(1, as*Cs + ab*Cb)``, ``ao = min(1, as + ab)``.
- ``source`` (replace): inside the layer's rectangle the layer replaces what is below. With an
  opacity ``o`` below 1 the result is interpolated towards what was there, as Cairo and
  Skia treat a global alpha on a replacing operator:
  ``co = o*sa*Cs + (1 - o)*ab*Cb``, ``ao = o*sa + (1 - o)*ab``.

All values here are normalised to [0, 1]; these helpers are scalar and used by the kernels'
general path. The ``normal`` mode has vectorised fast paths in ``framering.kernels.spans``.
"""

from __future__ import annotations

import enum
import math

from framering.kernels.jit import KERNEL


class BlendMode(enum.IntEnum):
    """How a layer's colour combines with the colour below it (stable integer codes)."""

    NORMAL = 0
    MULTIPLY = 1
    SCREEN = 2
    OVERLAY = 3
    DARKEN = 4
    LIGHTEN = 5
    COLOR_DODGE = 6
    COLOR_BURN = 7
    HARD_LIGHT = 8
    SOFT_LIGHT = 9
    DIFFERENCE = 10
    EXCLUSION = 11
    ADD = 12
    SOURCE = 13

    @property
    def css_name(self) -> str:
        """The mode's name as CSS and the W3C spec spell it (``"color-dodge"``)."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, value: BlendMode | str) -> BlendMode:
        """Accept a :class:`BlendMode` or its name (``"color-dodge"`` or ``"color_dodge"``).

        Raises:
            ValueError: the name is not a known blend mode (the message lists them).
            TypeError: the value is neither a string nor a BlendMode.
        """
        if isinstance(value, BlendMode):
            return value
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            try:
                return cls[key.upper()]
            except KeyError:
                raise ValueError(
                    f"unknown blend mode {value!r}; expected one of {', '.join(BLEND_MODE_NAMES)}"
                ) from None
        raise TypeError(f"blend mode must be a str or BlendMode, not {type(value).__name__}")


BLEND_MODE_NAMES: tuple[str, ...] = tuple(mode.css_name for mode in BlendMode)

# Plain ints so that Numba freezes them as constants in the kernels.
_MULTIPLY = int(BlendMode.MULTIPLY)
_SCREEN = int(BlendMode.SCREEN)
_OVERLAY = int(BlendMode.OVERLAY)
_DARKEN = int(BlendMode.DARKEN)
_LIGHTEN = int(BlendMode.LIGHTEN)
_COLOR_DODGE = int(BlendMode.COLOR_DODGE)
_COLOR_BURN = int(BlendMode.COLOR_BURN)
_HARD_LIGHT = int(BlendMode.HARD_LIGHT)
_SOFT_LIGHT = int(BlendMode.SOFT_LIGHT)
_DIFFERENCE = int(BlendMode.DIFFERENCE)
_EXCLUSION = int(BlendMode.EXCLUSION)


@KERNEL
def _multiply(cb: float, cs: float) -> float:
    return cb * cs


@KERNEL
def _screen(cb: float, cs: float) -> float:
    return cb + cs - cb * cs


@KERNEL
def _hard_light(cb: float, cs: float) -> float:
    # if Cs <= 0.5: Multiply(Cb, 2 Cs) else Screen(Cb, 2 Cs - 1)
    if cs <= 0.5:
        return _multiply(cb, 2.0 * cs)
    return _screen(cb, 2.0 * cs - 1.0)


@KERNEL
def _soft_light(cb: float, cs: float) -> float:
    # if Cs <= 0.5: Cb - (1 - 2 Cs) Cb (1 - Cb)
    # else:         Cb + (2 Cs - 1) (D(Cb) - Cb),
    # D(Cb) = ((16 Cb - 12) Cb + 4) Cb if Cb <= 0.25 else sqrt(Cb)
    if cs <= 0.5:
        return cb - (1.0 - 2.0 * cs) * cb * (1.0 - cb)
    if cb <= 0.25:
        d = ((16.0 * cb - 12.0) * cb + 4.0) * cb
    else:
        d = math.sqrt(cb)
    return cb + (2.0 * cs - 1.0) * (d - cb)


@KERNEL
def blend_channel(mode: int, cb: float, cs: float) -> float:
    """B(Cb, Cs) of a separable blend mode, on colours normalised to [0, 1]."""
    if mode == _MULTIPLY:
        return _multiply(cb, cs)
    if mode == _SCREEN:
        return _screen(cb, cs)
    if mode == _OVERLAY:  # HardLight(Cs, Cb): the backdrop decides
        return _hard_light(cs, cb)
    if mode == _DARKEN:
        return min(cb, cs)
    if mode == _LIGHTEN:
        return max(cb, cs)
    if mode == _COLOR_DODGE:
        if cb == 0.0:
            return 0.0
        if cs >= 1.0:
            return 1.0
        return min(1.0, cb / (1.0 - cs))
    if mode == _COLOR_BURN:
        if cb >= 1.0:
            return 1.0
        if cs <= 0.0:
            return 0.0
        return 1.0 - min(1.0, (1.0 - cb) / cs)
    if mode == _HARD_LIGHT:
        return _hard_light(cb, cs)
    if mode == _SOFT_LIGHT:
        return _soft_light(cb, cs)
    if mode == _DIFFERENCE:
        return abs(cb - cs)
    if mode == _EXCLUSION:
        return cb + cs - 2.0 * cb * cs
    return cs  # normal
