"""The reference workloads (studio-1080p, stress-4k, sprites-1080p), built by their recipes.

The JSON files in ``kernels/workloads/`` are copies of the shared reference workloads; their
README gives the exact recipe for every pixel, implemented here so that any implementation
(this one, Pillow, GStreamer) composites the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from framering.kernels.layers import PixelLayer

WORKLOAD_NAMES: tuple[str, ...] = ("studio-1080p", "stress-4k", "sprites-1080p")


@dataclass(frozen=True)
class Workload:
    """A frame size and its layer stack, bottom first (repeated sprites share one array)."""

    name: str
    width: int
    height: int
    layers: tuple[PixelLayer, ...]

    @property
    def layer_bytes(self) -> int:
        """Bytes of every layer's pixels, counting a repeated sprite once per copy."""
        return sum(layer.pixels.nbytes for layer in self.layers)

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * 4


def load_spec(name: str) -> dict[str, Any]:
    """The JSON description of a reference workload."""
    if name not in WORKLOAD_NAMES:
        raise ValueError(f"unknown workload {name!r}; expected one of {', '.join(WORKLOAD_NAMES)}")
    text = resources.files(__package__).joinpath("workloads", f"{name}.json").read_text()
    return json.loads(text)


def make_alpha(recipe: str, w: int, h: int, seed: int, i: int) -> np.ndarray:
    """The (h, w) alpha channel of layer ``i`` made by ``recipe``."""
    if recipe == "opaque":
        return np.full((h, w), 255, np.uint8)
    if recipe == "ramp":
        column = np.floor(255 * np.arange(w) / max(w - 1, 1)).astype(np.uint8)
        return np.broadcast_to(column, (h, w)).copy()
    if recipe == "disc":
        r = min(w, h) / 2
        rows, cols = np.mgrid[0:h, 0:w]
        d = np.hypot(cols + 0.5 - w / 2, rows + 0.5 - h / 2)
        return np.clip(np.round(255 * (r - d) / 8), 0, 255).astype(np.uint8)
    if recipe == "random":
        rng = np.random.default_rng(seed * 1000 + 500 + i)
        return rng.integers(0, 256, (h, w), dtype=np.uint8)
    raise ValueError(f"unknown alpha recipe {recipe!r}")


def build(name: str) -> Workload:
    """Build a reference workload's pixels exactly as its recipe says."""
    spec = load_spec(name)
    width, height, seed = spec["width"], spec["height"], spec["seed"]
    layers: list[PixelLayer] = []
    for i, entry in enumerate(spec["layers"]):
        w, h = entry["w"], entry["h"]
        rgb = np.random.default_rng(seed * 1000 + i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        pixels = np.empty((h, w, 4), np.uint8)
        pixels[..., :3] = rgb
        pixels[..., 3] = make_alpha(entry["alpha"], w, h, seed, i)
        common = {"opacity": float(entry["opacity"]), "blend": entry["blend"]}
        if "count" in entry:
            rng = np.random.default_rng(seed * 1000 + 900 + i)
            count = entry["count"]
            xs = rng.integers(-w // 2, width - w // 2, count)
            ys = rng.integers(-h // 2, height - h // 2, count)
            layers.extend(
                PixelLayer(pixels, x=int(x), y=int(y), **common)
                for x, y in zip(xs, ys, strict=True)
            )
        else:
            layers.append(PixelLayer(pixels, x=entry["x"], y=entry["y"], **common))
    return Workload(name, width, height, tuple(layers))
