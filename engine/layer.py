"""What a caller puts in a frame: :class:`Layer`, and its validation into task records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from engine.errors import InvalidTypeError, InvalidValueError
from engine.protocol import LAYER_OPAQUE, LAYER_PREMULTIPLIED, LAYER_RECORD
from engine.sources import LiveSource, Source
from engine.validation import checked
from kernels import BlendMode
from kernels.validate import INT32_MAX, INT32_MIN, check_opacity, check_position

# Most layers one frame may have. A RENDER message carries 24 bytes a layer, so this keeps a
# task under 100 KiB (it never blocks a pipe for long), and is far beyond any real scene.
MAX_LAYERS: Final = 4096


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of a frame: a source, where it goes, and how it blends.

    Attributes:
        source: a :class:`Source` or :class:`LiveSource` of the same engine.
        x, y: where the source's top-left pixel lands; negative or past the edge is fine,
            what falls outside the frame is clipped. Must fit in int32.
        opacity: global factor in [0, 1] on top of the per-pixel alpha.
        blend: a blend mode name (``"normal"``, ``"multiply"``, ``"screen"``, ...) or
            ``kernels.BlendMode``.
        premultiplied: the source's RGB is premultiplied by its alpha.
    """

    source: Source | LiveSource
    x: int = 0
    y: int = 0
    opacity: float = 1.0
    blend: str | BlendMode = "normal"
    premultiplied: bool = False


# Blend mode codes by every name BlendMode.parse accepts for them, for the per-layer fast path.
_MODE_CODES: Final = {
    **{mode.css_name: int(mode) for mode in BlendMode},
    **{mode.name.lower(): int(mode) for mode in BlendMode},
    **{mode: int(mode) for mode in BlendMode},
}


def _mode_code(blend: object) -> int:
    code = _MODE_CODES.get(blend) if isinstance(blend, str | BlendMode) else None
    return code if code is not None else int(checked(BlendMode.parse, blend))


def pack_layers(layers: Sequence[Layer], engine_token: str) -> np.ndarray:
    """Validate ``layers`` (bottom first) and pack them as ``LAYER_RECORD``s.

    The ``buffer`` column is left 0: the caller pins live sources after validation succeeds.
    This runs for every frame in the caller's thread, so each check has a fast path for the
    values a live loop passes (plain ints and floats in range, known blend names); anything
    else goes through the full validators, which raise with the details.
    """
    if not isinstance(layers, Sequence) or isinstance(layers, str | bytes):
        raise InvalidTypeError(f"layers must be a list of Layer, not {type(layers).__name__}")
    if len(layers) > MAX_LAYERS:
        raise InvalidValueError(f"a frame may have at most {MAX_LAYERS} layers, not {len(layers)}")
    ids, modes, flags, xs, ys, opacity = [], [], [], [], [], []
    for i, layer in enumerate(layers):
        if type(layer) is not Layer:
            raise InvalidTypeError(f"layers[{i}] must be a Layer, not {type(layer).__name__}")
        source = layer.source
        if type(source) is not Source and type(source) is not LiveSource:
            raise InvalidTypeError(
                f"layers[{i}].source must be a Source or LiveSource, not {type(source).__name__}"
            )
        source.check_owner(engine_token)
        if type(layer.premultiplied) is not bool:
            raise InvalidTypeError(f"layers[{i}].premultiplied must be a bool")
        x, y, o = layer.x, layer.y, layer.opacity
        if type(x) is not int or not INT32_MIN <= x <= INT32_MAX:
            x = checked(check_position, x, f"layers[{i}].x")
        if type(y) is not int or not INT32_MIN <= y <= INT32_MAX:
            y = checked(check_position, y, f"layers[{i}].y")
        if type(o) is not float or not 0.0 <= o <= 1.0:  # NaN fails the comparison too
            o = checked(check_opacity, o, f"layers[{i}].opacity")
        ids.append(source.id)
        modes.append(_mode_code(layer.blend))
        flags.append(
            (LAYER_OPAQUE if source.opaque else 0)
            | (LAYER_PREMULTIPLIED if layer.premultiplied else 0)
        )
        xs.append(x)
        ys.append(y)
        opacity.append(o)
    records = np.zeros(len(layers), LAYER_RECORD)
    records["source"] = ids
    records["mode"] = modes
    records["flags"] = flags
    records["x"] = xs
    records["y"] = ys
    records["opacity"] = opacity
    return records
