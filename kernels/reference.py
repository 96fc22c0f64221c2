"""Slow, obviously correct float64 numpy twins of the kernels: the definition of right.

Tests compare every kernel against these, and benchmarks check their pictures with them.
Written straight from the W3C formulas (see ``framering.kernels.blend``) with whole-array numpy, no
cleverness: no packing, no fast paths, no float32. A stack is accumulated as premultiplied
float64 and rounded once, with ``floor(255 * value + 0.5)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from framering.kernels.blend import BlendMode
from framering.kernels.formats import FrameFormat
from framering.kernels.layers import PixelLayer
from framering.kernels.transform import FLIPS, INTERPOLATIONS, ROTATIONS, Transform


def blend_function(mode: BlendMode, cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """B(Cb, Cs) for a separable blend mode on float64 colours in [0, 1]."""

    def multiply(b: np.ndarray, s: np.ndarray) -> np.ndarray:
        return b * s

    def screen(b: np.ndarray, s: np.ndarray) -> np.ndarray:
        return b + s - b * s

    def hard_light(b: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.where(s <= 0.5, multiply(b, 2 * s), screen(b, 2 * s - 1))

    if mode is BlendMode.NORMAL:
        return cs
    if mode is BlendMode.MULTIPLY:
        return multiply(cb, cs)
    if mode is BlendMode.SCREEN:
        return screen(cb, cs)
    if mode is BlendMode.OVERLAY:
        return hard_light(cs, cb)
    if mode is BlendMode.DARKEN:
        return np.minimum(cb, cs)
    if mode is BlendMode.LIGHTEN:
        return np.maximum(cb, cs)
    if mode is BlendMode.COLOR_DODGE:
        with np.errstate(divide="ignore", invalid="ignore"):
            dodge = np.minimum(1.0, cb / (1.0 - cs))
        return np.where(cb == 0, 0.0, np.where(cs >= 1, 1.0, dodge))
    if mode is BlendMode.COLOR_BURN:
        with np.errstate(divide="ignore", invalid="ignore"):
            burn = 1.0 - np.minimum(1.0, (1.0 - cb) / cs)
        return np.where(cb >= 1, 1.0, np.where(cs <= 0, 0.0, burn))
    if mode is BlendMode.HARD_LIGHT:
        return hard_light(cb, cs)
    if mode is BlendMode.SOFT_LIGHT:
        d = np.where(cb <= 0.25, ((16 * cb - 12) * cb + 4) * cb, np.sqrt(cb))
        return np.where(cs <= 0.5, cb - (1 - 2 * cs) * cb * (1 - cb), cb + (2 * cs - 1) * (d - cb))
    if mode is BlendMode.DIFFERENCE:
        return np.abs(cb - cs)
    if mode is BlendMode.EXCLUSION:
        return cb + cs - 2 * cb * cs
    raise ValueError(f"{mode.css_name} is not a separable blend function")


# Exact results that land on a half (13/2 = 6.5) come out of float64 as 6.4999999999999991;
# rounding them up needs a nudge far above float64's error (~1e-13 here) and far below any
# real distance from a half that 8-bit inputs and a float opacity produce in practice.
TIE_NUDGE = 1e-9


def to_rgba8(value: np.ndarray) -> np.ndarray:
    """floor(255 * value + 0.5) of values in [0, 1], as uint8 (exact halves round up)."""
    return np.floor(np.clip(value, 0.0, 1.0) * 255.0 + 0.5 + TIE_NUDGE).astype(np.uint8)


def _premultiplied(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(colour premultiplied, alpha) of a straight RGBA8 frame, float64 on [0, 1]."""
    values = frame.astype(np.float64) / 255.0
    return values[..., :3] * values[..., 3:4], values[..., 3:4].copy()


def _straight_rgba8(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Premultiplied float64 colour and alpha rounded once to straight RGBA8."""
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(alpha > 0, colour / alpha, 0.0)
    return np.concatenate([to_rgba8(straight), to_rgba8(alpha)], axis=2)


def _blend_into(colour: np.ndarray, alpha: np.ndarray, layer: PixelLayer) -> None:
    """One layer composited into premultiplied float64 ``colour`` and ``alpha``, in place."""
    height, width = colour.shape[:2]
    h, w = layer.pixels.shape[:2]
    x0, x1 = max(layer.x, 0), min(layer.x + w, width)
    y0, y1 = max(layer.y, 0), min(layer.y + h, height)
    if x0 >= x1 or y0 >= y1 or layer.opacity == 0.0:
        return
    mode = BlendMode.parse(layer.blend)
    o = float(layer.opacity)
    src = layer.pixels[y0 - layer.y : y1 - layer.y, x0 - layer.x : x1 - layer.x].astype(np.float64)
    pre_b = colour[y0:y1, x0:x1]  # ab * Cb
    ab = alpha[y0:y1, x0:x1]

    sa_pixel = src[..., 3:4] / 255.0
    if layer.premultiplied:
        with np.errstate(divide="ignore", invalid="ignore"):
            cs = np.where(src[..., 3:4] > 0, np.minimum(1.0, src[..., :3] / src[..., 3:4]), 0.0)
    else:
        cs = src[..., :3] / 255.0
    sa = sa_pixel * o
    with np.errstate(divide="ignore", invalid="ignore"):
        cb = np.where(ab > 0, np.minimum(1.0, pre_b / ab), 0.0)

    if mode is BlendMode.SOURCE:
        co = sa * cs + (1 - o) * pre_b
        ao = sa + (1 - o) * ab
    elif mode is BlendMode.ADD:
        co = np.minimum(1.0, sa * cs + pre_b)
        ao = np.minimum(1.0, sa + ab)
    else:
        blended = (1 - ab) * cs + ab * blend_function(mode, cb, cs)
        co = sa * blended + (1 - sa) * pre_b
        ao = sa + ab * (1 - sa)
    if mode is not BlendMode.SOURCE:  # a fully transparent source pixel changes nothing
        unchanged = src[..., 3:4] == 0
        co = np.where(unchanged, pre_b, co)
        ao = np.where(unchanged, ab, ao)
    colour[y0:y1, x0:x1] = co
    alpha[y0:y1, x0:x1] = ao


def composite_layer_reference(frame: np.ndarray, layer: PixelLayer) -> np.ndarray:
    """A new frame: ``layer`` composited over ``frame`` (both straight RGBA8), rounded once.
    Pixels the layer leaves unchanged keep their bytes."""
    colour, alpha = _premultiplied(frame)
    _blend_into(colour, alpha, layer)
    out = _straight_rgba8(colour, alpha)
    untouched = (frame[..., 3:4] == 0) & (alpha == 0)  # colour under alpha 0 is kept too
    return np.where(untouched, frame, out)


def composite_stack_exact(
    width: int, height: int, layers: Sequence[PixelLayer], base: np.ndarray | None = None
) -> np.ndarray:
    """Layers (bottom first) over ``base`` (default: transparent black), never rounded:
    (H, W, 4) float64 with premultiplied colour and alpha on a 0-255 scale. What a stack
    kernel is judged against (:func:`stack_errors`)."""
    if base is None:
        colour, alpha = np.zeros((height, width, 3)), np.zeros((height, width, 1))
    else:
        colour, alpha = _premultiplied(base)
    for layer in layers:
        _blend_into(colour, alpha, layer)
    return 255.0 * np.concatenate([colour, alpha], axis=2)


def composite_stack_reference(
    width: int, height: int, layers: Sequence[PixelLayer], base: np.ndarray | None = None
) -> np.ndarray:
    """Layers (bottom first) composited over ``base`` (default: transparent black), as
    straight RGBA8: the exact stack rounded once."""
    exact = composite_stack_exact(width, height, layers, base) / 255.0
    return _straight_rgba8(exact[..., :3], exact[..., 3:4])


# The tolerance of a whole stack against its exact value (the project's quality bar): one
# unit of straight colour where the result's alpha is at least half (below that straight
# colour is ill-conditioned: at alpha 1 a premultiplied step of 1/255 moves it by 255), 1.5
# of premultiplied colour everywhere, and one unit of alpha.
STACK_STRAIGHT_TOLERANCE = 1.0
STACK_STRAIGHT_MIN_ALPHA = 128
STACK_PREMULTIPLIED_TOLERANCE = 1.5
STACK_ALPHA_TOLERANCE = 1.0


def stack_errors(got: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    """The worst errors of a straight RGBA8 frame against :func:`composite_stack_exact`:
    ``straight`` (where the frame's alpha >= 128), ``premultiplied`` and ``alpha``."""
    values = got.astype(np.float64)
    alpha = exact[..., 3:4]
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(alpha > 0, exact[..., :3] * 255.0 / alpha, 0.0)
    solid = got[..., 3] >= STACK_STRAIGHT_MIN_ALPHA
    straight_error = np.abs(values[..., :3] - straight)[solid]
    premultiplied = values[..., :3] * values[..., 3:4] / 255.0
    return {
        "straight": float(straight_error.max(initial=0.0)),
        "premultiplied": float(np.abs(premultiplied - exact[..., :3]).max(initial=0.0)),
        "alpha": float(np.abs(values[..., 3:4] - alpha).max(initial=0.0)),
    }


def stack_within_tolerance(got: np.ndarray, exact: np.ndarray) -> bool:
    """Whether ``got`` meets the stack tolerance against its exact value."""
    errors = stack_errors(got, exact)
    slack = 1e-9
    return (
        errors["straight"] <= STACK_STRAIGHT_TOLERANCE + slack
        and errors["premultiplied"] <= STACK_PREMULTIPLIED_TOLERANCE + slack
        and errors["alpha"] <= STACK_ALPHA_TOLERANCE + slack
    )


def fill_reference(
    frame: np.ndarray,
    color: tuple[int, int, int, int],
    rect: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """A new frame with ``rect`` (x, y, w, h; default: everything) set to ``color``."""
    out = frame.copy()
    if rect is None:
        out[...] = color
        return out
    x, y, w, h = rect
    out[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = color
    return out


def premultiplied_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-channel |a - b| of two straight RGBA8 frames, comparing RGB premultiplied by alpha.

    The tolerance rule of the tests: straight RGB is ill-conditioned where alpha is low (at
    alpha 1, a change of 1/255 in premultiplied colour moves straight colour by 255), so a
    channel agrees if its straight value is within the tolerance *or* its premultiplied value
    ``C * A / 255`` is. Alpha is always compared directly.
    """
    fa = a.astype(np.float64)
    fb = b.astype(np.float64)
    straight = np.abs(fa - fb)
    pre = np.abs(fa[..., :3] * fa[..., 3:4] / 255.0 - fb[..., :3] * fb[..., 3:4] / 255.0)
    rgb = np.minimum(straight[..., :3], pre)
    return np.concatenate([rgb, straight[..., 3:4]], axis=-1)


# (Kr, Kb) of each YUV matrix, from the standards, as in ``framering.kernels.yuv``: stated
# again rather than imported, so that a wrong coefficient there cannot pass its own test.
YUV_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def yuv420_reference(
    frame: np.ndarray, matrix: str = "bt709", value_range: str = "limited"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, Cb, Cr) planes of an RGBA8 frame in float64, chroma the mean of each 2x2 block,
    straight from the formulas in ``framering.kernels.yuv`` (not rounded)."""
    kr, kb = YUV_MATRICES[matrix]
    rgb = frame[..., :3].astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - luma) / (2 * (1 - kb))
    cr = (r - luma) / (2 * (1 - kr))
    h, w = luma.shape
    cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    if value_range == "limited":
        return 16 + 219 * luma, 128 + 224 * cb, 128 + 224 * cr
    return 255 * luma, 128 + 255 * cb, 128 + 255 * cr


def rgb_from_yuv420_reference(
    src: np.ndarray, fmt: str, matrix: str = "bt709", value_range: str = "limited"
) -> np.ndarray:
    """(h, w, 3) float64 RGB on 0-255 (not rounded, not clamped) of an I420 or NV12 picture
    laid out as ``cv2`` does (``FrameFormat.planes``), each chroma sample covering its 2x2
    block.

    The formulas of ``framering.kernels.yuv`` solved for R, G, B::

        R = Y' + 2 (1 - Kr) Cr      B = Y' + 2 (1 - Kb) Cb      G = (Y' - Kr R - Kb B) / Kg
    """
    kr, kb = YUV_MATRICES[matrix]
    kg = 1 - kr - kb
    h, w = src.shape[0] * 2 // 3, src.shape[1]
    luma = src[:h].astype(np.float64)
    picture = src.reshape(-1).astype(np.float64)
    cb0, cr0, step, pitch = FrameFormat(fmt).planes(w, h)
    block = np.arange(h // 2)[:, None] * pitch + np.arange(w // 2)[None, :] * step
    cb, cr = picture[cb0 + block], picture[cr0 + block]  # sample (i, j) of the (i, j) block
    cb = np.repeat(np.repeat(cb, 2, axis=0), 2, axis=1)
    cr = np.repeat(np.repeat(cr, 2, axis=0), 2, axis=1)
    if value_range == "limited":
        y, pb, pr = (luma - 16) / 219, (cb - 128) / 224, (cr - 128) / 224
    else:
        y, pb, pr = luma / 255, (cb - 128) / 255, (cr - 128) / 255
    r = y + 2 * (1 - kr) * pr
    b = y + 2 * (1 - kb) * pb
    g = (y - kr * r - kb * b) / kg
    return 255 * np.stack([r, g, b], axis=-1)


# Where each format's bytes come from in an RGBA8 pixel (packed formats).
PACKED_CHANNELS = {"rgba": [0, 1, 2, 3], "bgra": [2, 1, 0, 3], "rgb": [0, 1, 2], "bgr": [2, 1, 0]}


def packed_reference(frame: np.ndarray, fmt: str) -> np.ndarray:
    """An RGBA8 frame in a packed format (rgba, bgra, rgb, bgr): its channels reordered."""
    return frame[..., PACKED_CHANNELS[fmt]].copy()


def rgba_from_packed_reference(src: np.ndarray, fmt: str) -> np.ndarray:
    """A packed picture (rgba, bgra, rgb, bgr) as RGBA8, alpha 255 where it has none."""
    out = np.full((*src.shape[:2], 4), 255, np.uint8)
    out[..., PACKED_CHANNELS[fmt]] = src
    return out


def transform_reference(src: np.ndarray, t: Transform) -> np.ndarray:
    """A :class:`Transform` spelled out as plain OpenCV calls, each allocating its result:
    what ``apply_transform`` must equal, and what a caller would write without framering."""
    picture = src
    if t.crop is not None:
        x, y, w, h = t.crop
        picture = src[y : y + h, x : x + w]  # a view: the first OpenCV call reads it
        if not t.steps():
            return picture.copy()
    if t.flip is not None:
        picture = cv2.flip(picture, FLIPS[t.flip])
    if t.rotate:
        picture = cv2.rotate(picture, ROTATIONS[t.rotate])
    if t.size is not None:
        picture = cv2.resize(picture, t.size, interpolation=INTERPOLATIONS[t.interpolation])
    if t.angle % 360:
        h, w = picture.shape[:2]
        center = t.center if t.center is not None else ((w - 1) / 2, (h - 1) / 2)
        m = cv2.getRotationMatrix2D(center, -t.angle, 1.0)
        picture = cv2.warpAffine(
            picture,
            m,
            (w, h),
            flags=INTERPOLATIONS[t.interpolation],
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0, 0),
        )
    return picture
