"""hypothesis strategies for random layers, frames and stacks."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from framering.kernels import BlendMode, PixelLayer

# opacities that hit the edge cases first: invisible, barely visible, one 8-bit step, full
OPACITIES = st.one_of(
    st.sampled_from([0.0, 1e-9, 1 / 255, 0.5, 1.0]), st.floats(0.0, 1.0, allow_nan=False)
)
ALPHA_KINDS = ("random", "opaque", "clear", "binary", "low")


def rgba(rng: np.random.Generator, h: int, w: int, alpha: str, premultiplied: bool) -> np.ndarray:
    """A random RGBA8 picture whose alpha channel follows ``alpha``."""
    pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    if alpha == "opaque":
        pixels[..., 3] = 255
    elif alpha == "clear":
        pixels[..., 3] = 0
    elif alpha == "binary":
        pixels[..., 3] = np.where(rng.random((h, w)) < 0.5, 0, 255)
    elif alpha == "low":
        pixels[..., 3] = rng.integers(0, 8, (h, w))
    if premultiplied:
        rgb = pixels[..., :3].astype(np.uint32) * pixels[..., 3:4] // 255
        pixels[..., :3] = rgb.astype(np.uint8)
    return pixels


@st.composite
def frames(draw: st.DrawFn, max_side: int = 40) -> np.ndarray:
    """A destination frame: 1x1, odd widths, transparent, opaque or anything."""
    w = draw(st.integers(1, max_side))
    h = draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    alpha = draw(st.sampled_from(ALPHA_KINDS))
    return rgba(np.random.default_rng(seed), h, w, alpha, premultiplied=False)


@st.composite
def layers(
    draw: st.DrawFn,
    frame_w: int,
    frame_h: int,
    *,
    modes: st.SearchStrategy[BlendMode] | None = None,
    max_side: int = 40,
) -> PixelLayer:
    """A layer placed anywhere around the frame: inside, across an edge, or fully outside."""
    w = draw(st.integers(1, max_side))
    h = draw(st.integers(1, max_side))
    x = draw(st.integers(-w - 3, frame_w + 3))
    y = draw(st.integers(-h - 3, frame_h + 3))
    premultiplied = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    alpha = draw(st.sampled_from(ALPHA_KINDS))
    mode = draw(modes if modes is not None else st.sampled_from(list(BlendMode)))
    pixels = rgba(np.random.default_rng(seed), h, w, alpha, premultiplied)
    return PixelLayer(
        pixels,
        x=x,
        y=y,
        opacity=draw(OPACITIES),
        blend=mode,
        premultiplied=premultiplied,
        opaque=True if alpha == "opaque" else None,
    )


@st.composite
def frame_and_layer(draw: st.DrawFn, **kwargs: object) -> tuple[np.ndarray, PixelLayer]:
    frame = draw(frames())
    return frame, draw(layers(frame.shape[1], frame.shape[0], **kwargs))


@st.composite
def frame_and_stack(draw: st.DrawFn, max_layers: int = 5) -> tuple[np.ndarray, list[PixelLayer]]:
    frame = draw(frames())
    h, w = frame.shape[:2]
    count = draw(st.integers(1, max_layers))
    return frame, [draw(layers(w, h)) for _ in range(count)]
