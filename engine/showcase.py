"""The demo's pictures, drawn once at start with OpenCV: a scene that looks like a show.

No image files ship with framering; everything here is drawn from code, in RGBA with straight
alpha, at any frame size (laid out for 1920x1080 and scaled):

- a background with depth: a diagonal gradient, a faint floor grid and a soft vignette;
- a camera picture generator: moving shapes over a gradient, with a running timecode;
- a lower third (name and title on a rounded panel with a soft shadow);
- a semi-transparent logo with soft edges;
- a clock face drawn for each second.

The reference workloads keep their exact random recipes for the benchmarks; this is only for
people to look at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_DUPLEX
# Sizes as laid out for 1920x1080; every picture scales with the frame's height.
LAYOUT_HEIGHT = 1080


def _scale(height: int) -> float:
    return height / LAYOUT_HEIGHT


def background(width: int, height: int) -> np.ndarray:
    """An opaque studio backdrop: deep blue to violet, a floor grid, a vignette."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xs / max(width - 1, 1), ys / max(height - 1, 1)
    mix = 0.55 * u + 0.45 * v
    top, bottom = np.array([18, 36, 92], np.float32), np.array([92, 26, 110], np.float32)
    rgb = top * (1 - mix[..., None]) + bottom * mix[..., None]
    grid = max(8, round(64 * _scale(height)))
    lines = ((xs.astype(np.int32) % grid == 0) | (ys.astype(np.int32) % grid == 0)) & (v > 0.6)
    rgb[lines] += 18
    distance = np.sqrt((u - 0.5) ** 2 + (v - 0.45) ** 2)
    rgb *= np.clip(1.15 - 0.9 * distance, 0.35, 1.0)[..., None]
    out = np.empty((height, width, 4), np.uint8)
    out[..., :3] = np.clip(rgb, 0, 255)
    out[..., 3] = 255
    return out


@dataclass
class CameraPainter:
    """Draws the 'camera' picture of frame ``index`` into a live source's RGBA buffer."""

    width: int
    height: int
    fps: float

    def __post_init__(self) -> None:
        ys, xs = np.mgrid[0 : self.height, 0 : self.width]
        base = np.empty((self.height, self.width, 4), np.uint8)
        base[..., 0] = 40 + xs * 120 // max(self.width, 1)
        base[..., 1] = 70 + ys * 110 // max(self.height, 1)
        base[..., 2] = 150
        base[..., 3] = 255
        self._base = base

    def paint(self, pixels: np.ndarray, index: int) -> None:
        """Frame ``index``: orbiting discs, a sweeping bar and the timecode, drawn in place."""
        pixels[...] = self._base
        w, h = self.width, self.height
        t = index / self.fps
        bar = int((t * 0.25 % 1.0) * w)
        pixels[:, max(bar - 6, 0) : bar + 6, :3] = (255, 255, 255)
        for k, colour in enumerate(((255, 196, 40), (255, 80, 96), (80, 230, 160))):
            angle = t * (0.9 + 0.35 * k) + k * 2.1
            centre = (
                int(w / 2 + w * 0.3 * math.cos(angle)),
                int(h / 2 + h * 0.28 * math.sin(1.3 * angle)),
            )
            cv2.circle(pixels, centre, int(h * 0.09), (*colour, 255), -1, cv2.LINE_AA)
        seconds, frame = divmod(index, max(1, round(self.fps)))
        code = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{frame:02d}"
        size = h / 720
        cv2.rectangle(pixels, (0, h - int(64 * size)), (int(360 * size), h), (0, 0, 0, 255), -1)
        origin = (int(16 * size), h - int(18 * size))
        cv2.putText(pixels, code, origin, FONT, 1.2 * size, (255, 255, 255, 255), 2, cv2.LINE_AA)


def _soft_alpha(mask: np.ndarray, blur: int) -> np.ndarray:
    blur = blur | 1
    return cv2.GaussianBlur(mask, (blur, blur), 0)


def lower_third(width: int, height: int, name: str, title: str) -> np.ndarray:
    """A name and a title on a rounded, semi-opaque panel with a soft shadow."""
    s = _scale(height)
    w, h = int(880 * s), int(170 * s)
    panel = np.zeros((h, w, 4), np.uint8)
    radius = int(28 * s)
    mask = np.zeros((h, w), np.uint8)
    inner = (int(12 * s), int(12 * s), w - int(12 * s), h - int(12 * s))
    cv2.rectangle(mask, (inner[0] + radius, inner[1]), (inner[2] - radius, inner[3]), 255, -1)
    cv2.rectangle(mask, (inner[0], inner[1] + radius), (inner[2], inner[3] - radius), 255, -1)
    for cx in (inner[0] + radius, inner[2] - radius):
        for cy in (inner[1] + radius, inner[3] - radius):
            cv2.circle(mask, (cx, cy), radius, 255, -1, cv2.LINE_AA)
    shadow = _soft_alpha(mask, int(24 * s))
    panel[..., 3] = (shadow.astype(np.uint16) * 160 // 255).astype(np.uint8)  # the shadow
    body = mask > 0
    panel[body, :3] = (250, 250, 252)
    panel[body, 3] = 236
    accent = (int(24 * s), int(30 * s), int(36 * s), h - int(30 * s))
    cv2.rectangle(panel, accent[:2], accent[2:], (230, 60, 80, 255), -1)
    ink = (24, 24, 40, 255)
    cv2.putText(panel, name, (int(60 * s), int(82 * s)), FONT, 1.7 * s, ink, 2, cv2.LINE_AA)
    cv2.putText(
        panel,
        title,
        (int(62 * s), int(132 * s)),
        FONT,
        1.05 * s,
        (90, 90, 110, 255),
        1,
        cv2.LINE_AA,
    )
    return panel


def logo(height: int, text: str = "fr") -> np.ndarray:
    """A round badge with soft edges, meant to be shown semi-transparent."""
    s = _scale(height)
    size = int(200 * s) | 1
    badge = np.zeros((size, size, 4), np.uint8)
    mask = np.zeros((size, size), np.uint8)
    centre = (size // 2, size // 2)
    cv2.circle(mask, centre, int(size * 0.42), 255, -1, cv2.LINE_AA)
    badge[..., 3] = _soft_alpha(mask, int(size * 0.08))
    badge[..., 0], badge[..., 1], badge[..., 2] = 255, 255, 255
    cv2.circle(badge, centre, int(size * 0.36), (230, 60, 80, 255), max(2, int(8 * s)), cv2.LINE_AA)
    scale = 2.4 * s
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, max(2, int(5 * s)))
    origin = (centre[0] - tw // 2, centre[1] + th // 2)
    cv2.putText(
        badge, text, origin, FONT, scale, (40, 40, 70, 255), max(2, int(5 * s)), cv2.LINE_AA
    )
    return badge


def clock(height: int, seconds_of_day: int) -> np.ndarray:
    """``HH:MM:SS`` on a dark translucent pill."""
    s = _scale(height)
    w, h = int(300 * s), int(84 * s)
    pill = np.zeros((h, w, 4), np.uint8)
    radius = h // 2
    cv2.rectangle(pill, (radius, 0), (w - radius, h), (10, 12, 24, 200), -1)
    cv2.circle(pill, (radius, radius), radius, (10, 12, 24, 200), -1, cv2.LINE_AA)
    cv2.circle(pill, (w - radius, radius), radius, (10, 12, 24, 200), -1, cv2.LINE_AA)
    hours, rest = divmod(seconds_of_day % 86400, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    scale = 1.5 * s
    (tw, th), _ = cv2.getTextSize(text, FONT, scale, 2)
    origin = ((w - tw) // 2, (h + th) // 2)
    cv2.putText(pill, text, origin, FONT, scale, (255, 255, 255, 255), 2, cv2.LINE_AA)
    return pill
