"""What a caller puts in a frame: :class:`Layer`, and its validation into task records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from framering.errors import InvalidTypeError, InvalidValueError
from framering.kernels import BlendMode
from framering.kernels.codes import LAYER_FRAME, LAYER_OPAQUE, LAYER_PREMULTIPLIED
from framering.kernels.transform import Transform
from framering.kernels.validate import INT32_MAX, INT32_MIN, check_opacity, check_position
from framering.protocol import (
    LAYER_RECORD,
    TRANSFORM_RECORD,
    pack_transform,
)
from framering.slots import FrameSlot
from framering.sources import LiveSource, Source
from framering.validation import checked

# Most layers one frame may have. A RENDER message carries 32 bytes a layer, so this keeps a
# task under 130 KiB (it never blocks a pipe for long), and is far beyond any real scene.
MAX_LAYERS: Final = 4096


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of a frame: a source, where it goes, and how it blends.

    Attributes:
        source: a :class:`Source` or :class:`LiveSource` of the same engine, or a finished
            :class:`FrameSlot` of it (a scene inside a scene): the slot cannot be reused
            until every frame reading it has finished.
        x, y: where the (transformed) source's top-left pixel lands; negative or past the
            edge is fine, what falls outside the frame is clipped. Must fit in int32.
        opacity: global factor in [0, 1] on top of the per-pixel alpha.
        blend: a blend mode name (``"normal"``, ``"multiply"``, ``"screen"``, ...) or
            ``framering.kernels.BlendMode``.
        premultiplied: the source's RGB is premultiplied by its alpha.
        transform: a :class:`framering.Transform` (crop, flip, rotate, scale, turn) the
            worker applies before blending; its result is cached per source picture, so
            a static transformed layer costs what an untransformed one does.
    """

    source: Source | LiveSource | FrameSlot
    x: int = 0
    y: int = 0
    opacity: float = 1.0
    blend: str | BlendMode = "normal"
    premultiplied: bool = False
    transform: Transform | None = None


# Blend mode codes by every name BlendMode.parse accepts for them, for the per-layer fast path.
_MODE_CODES: Final = {
    **{mode.css_name: int(mode) for mode in BlendMode},
    **{mode.name.lower(): int(mode) for mode in BlendMode},
    **{mode: int(mode) for mode in BlendMode},
}


def _mode_code(blend: object) -> int:
    code = _MODE_CODES.get(blend) if isinstance(blend, str | BlendMode) else None
    return code if code is not None else int(checked(BlendMode.parse, blend))


@dataclass(frozen=True, slots=True)
class PackedLayers:
    """A frame's layers as task records, plus what the caller must pin before sending."""

    records: np.ndarray  # LAYER_RECORD; ``buffer`` and ``version`` of live sources left 0
    transforms: np.ndarray  # TRANSFORM_RECORD, referenced 1-based by records["transform"]
    frames: tuple[FrameSlot, ...]  # finished frames read as layers
    sizes: np.ndarray  # (n, 2) int64: each layer's width and height as drawn (transformed)
    transform_list: tuple[Transform, ...] = ()  # the transforms, in record order


_NO_TRANSFORMS: Final = np.zeros(0, TRANSFORM_RECORD)


def pack_layers(
    layers: Sequence[Layer], engine_token: str, frame_size: tuple[int, int]
) -> PackedLayers:
    """Validate ``layers`` (bottom first) and pack them as ``LAYER_RECORD``s.

    This runs for every frame in the caller's thread, so each check has a fast path for the
    values a live loop passes (plain ints and floats in range, known blend names); anything
    else goes through the full validators, which raise with the details. ``frame_size`` is
    the engine's (width, height): the size of a frame read as a layer.
    """
    if not isinstance(layers, Sequence) or isinstance(layers, str | bytes):
        raise InvalidTypeError(f"layers must be a list of Layer, not {type(layers).__name__}")
    if len(layers) > MAX_LAYERS:
        raise InvalidValueError(f"a frame may have at most {MAX_LAYERS} layers, not {len(layers)}")
    ids, modes, flags, xs, ys, opacity, transform_ix = [], [], [], [], [], [], []
    sizes: list[tuple[int, int]] = []
    versions: list[int] = []  # a frame's sequence; sources get theirs when they are pinned
    transforms: dict[Transform, int] = {}
    frames: dict[int, FrameSlot] = {}
    for i, layer in enumerate(layers):
        if type(layer) is not Layer:
            raise InvalidTypeError(f"layers[{i}] must be a Layer, not {type(layer).__name__}")
        source = layer.source
        kind = type(source)
        if kind is Source or kind is LiveSource:
            source.check_owner(engine_token)  # type: ignore[union-attr]
            width, height = source.width, source.height  # type: ignore[union-attr]
            opaque = source.opaque  # type: ignore[union-attr]
            ids.append(source.id)  # type: ignore[union-attr]
            versions.append(0)
            flag = 0
        elif kind is FrameSlot:
            source.check_readable(engine_token, f"layers[{i}].source")  # type: ignore[union-attr]
            width, height = frame_size
            opaque = False  # unknown; the blend's alpha tests make opaque frames cheap anyway
            frames[source.index] = source  # type: ignore[union-attr]
            ids.append(source.index)  # type: ignore[union-attr]
            versions.append(source.sequence & 0xFFFFFFFF)  # type: ignore[union-attr]
            flag = LAYER_FRAME
        else:
            raise InvalidTypeError(
                f"layers[{i}].source must be a Source, LiveSource or FrameSlot, not {kind.__name__}"
            )
        if type(layer.premultiplied) is not bool:
            raise InvalidTypeError(f"layers[{i}].premultiplied must be a bool")
        transform = layer.transform
        if transform is None:
            transform_ix.append(0)
        elif type(transform) is Transform:
            width, height = checked(transform.output_size, width, height)  # crop inside
            opaque = opaque and transform.keeps_opacity()
            transform_ix.append(transforms.setdefault(transform, len(transforms) + 1))
        else:
            raise InvalidTypeError(
                f"layers[{i}].transform must be a Transform or None, not {type(transform).__name__}"
            )
        x, y, o = layer.x, layer.y, layer.opacity
        if type(x) is not int or not INT32_MIN <= x <= INT32_MAX:
            x = checked(check_position, x, f"layers[{i}].x")
        if type(y) is not int or not INT32_MIN <= y <= INT32_MAX:
            y = checked(check_position, y, f"layers[{i}].y")
        if type(o) is not float or not 0.0 <= o <= 1.0:  # NaN fails the comparison too
            o = checked(check_opacity, o, f"layers[{i}].opacity")
        modes.append(_mode_code(layer.blend))
        flags.append(
            flag
            | (LAYER_OPAQUE if opaque else 0)
            | (LAYER_PREMULTIPLIED if layer.premultiplied else 0)
        )
        sizes.append((width, height))
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
    packed_transforms = _NO_TRANSFORMS
    if transforms:
        records["transform"] = transform_ix
        packed_transforms = np.zeros(len(transforms), TRANSFORM_RECORD)
        for transform, number in transforms.items():
            pack_transform(transform, packed_transforms[number - 1 : number])
    if frames:
        records["version"] = versions
    return PackedLayers(
        records,
        packed_transforms,
        tuple(frames.values()),
        np.array(sizes, np.int64).reshape(-1, 2),
        tuple(transforms),
    )
