"""What a caller puts in a frame: :class:`Layer`, and its validation into task records."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    _packed: LayerRecord | None = field(default=None, init=False, repr=False, compare=False)

    def packed(self, engine_token: str, frame_size: tuple[int, int], index: int) -> LayerRecord:
        """This layer validated and packed for engine ``engine_token`` (``index`` names it in
        error messages). Kept on the layer: a ``Layer`` is immutable, so a live loop that
        passes the same layers frame after frame validates each once. A finished frame shown
        as a layer is checked again every time (it may have been released meanwhile)."""
        cached = self._packed
        if cached is not None and cached.engine_token == engine_token:
            return cached
        record = _pack_layer(self, engine_token, frame_size, index)
        if record.frame is None:
            object.__setattr__(self, "_packed", record)  # the one write, into its own cache
        return record


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """One validated layer: its LAYER_RECORD bytes and what a frame's packing adds to them."""

    engine_token: str
    record: bytes
    """A LAYER_RECORD with ``buffer``, ``version`` and ``transform`` left 0."""
    size: tuple[int, int]
    """Width and height as drawn (after the transform)."""
    transform: Transform | None
    source: Source | LiveSource | None
    """The source the layer shows, or None for a finished frame."""
    frame: FrameSlot | None
    """The finished frame the layer shows, if it shows one (never cached)."""


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
    sources: tuple[Source | LiveSource | None, ...]  # each layer's source (None: a frame)
    transform_list: tuple[Transform, ...] = ()  # the transforms, in record order


_NO_TRANSFORMS: Final = np.zeros(0, TRANSFORM_RECORD)


def _pack_layer(
    layer: Layer, engine_token: str, frame_size: tuple[int, int], i: int
) -> LayerRecord:
    """Validate one layer and pack its record. Each check has a fast path for the values a
    live loop passes (plain ints and floats in range, known blend names); anything else goes
    through the full validators, which raise with the details."""
    source = layer.source
    kind = type(source)
    frame = None
    if kind is Source or kind is LiveSource:
        source.check_owner(engine_token)  # type: ignore[union-attr]
        width, height = source.width, source.height  # type: ignore[union-attr]
        opaque = source.opaque  # type: ignore[union-attr]
        source_id = source.id  # type: ignore[union-attr]
        flag = 0
    elif kind is FrameSlot:
        source.check_readable(engine_token, f"layers[{i}].source")  # type: ignore[union-attr]
        width, height = frame_size
        opaque = False  # unknown; the blend's alpha tests make opaque frames cheap anyway
        frame = source
        source_id = source.index  # type: ignore[union-attr]
        flag = LAYER_FRAME
    else:
        raise InvalidTypeError(
            f"layers[{i}].source must be a Source, LiveSource or FrameSlot, not {kind.__name__}"
        )
    if type(layer.premultiplied) is not bool:
        raise InvalidTypeError(f"layers[{i}].premultiplied must be a bool")
    transform = layer.transform
    if transform is not None:
        if type(transform) is not Transform:
            raise InvalidTypeError(
                f"layers[{i}].transform must be a Transform or None, not {type(transform).__name__}"
            )
        width, height = checked(transform.output_size, width, height)  # the crop lies inside
        opaque = opaque and transform.keeps_opacity()
    x, y, o = layer.x, layer.y, layer.opacity
    if type(x) is not int or not INT32_MIN <= x <= INT32_MAX:
        x = checked(check_position, x, f"layers[{i}].x")
    if type(y) is not int or not INT32_MIN <= y <= INT32_MAX:
        y = checked(check_position, y, f"layers[{i}].y")
    if type(o) is not float or not 0.0 <= o <= 1.0:  # NaN fails the comparison too
        o = checked(check_opacity, o, f"layers[{i}].opacity")
    flags = (
        flag | (LAYER_OPAQUE if opaque else 0) | (LAYER_PREMULTIPLIED if layer.premultiplied else 0)
    )
    version = (frame.picture_version() & 0xFFFFFFFF) if frame is not None else 0
    record = _RECORD.pack(source_id, 0, _mode_code(layer.blend), flags, x, y, o, version, 0)
    picture = None if frame is not None else source
    return LayerRecord(engine_token, record, (width, height), transform, picture, frame)  # type: ignore[arg-type]


# LAYER_RECORD's layout (checked against the dtype below), packed in one call per layer.
_RECORD: Final = struct.Struct("<IHBBiidIHxx")
assert _RECORD.size == LAYER_RECORD.itemsize


def pack_layers(
    layers: Sequence[Layer], engine_token: str, frame_size: tuple[int, int]
) -> PackedLayers:
    """Validate ``layers`` (bottom first) and pack them as ``LAYER_RECORD``s.

    This runs for every frame in the caller's thread. Each layer's own record is validated
    once and kept on the layer (:meth:`Layer.packed`); a frame joins them and numbers its
    transforms. ``frame_size`` is the engine's (width, height): the size of a frame read as a
    layer.
    """
    if not isinstance(layers, Sequence) or isinstance(layers, str | bytes):
        raise InvalidTypeError(f"layers must be a list of Layer, not {type(layers).__name__}")
    if len(layers) > MAX_LAYERS:
        raise InvalidValueError(f"a frame may have at most {MAX_LAYERS} layers, not {len(layers)}")
    parts: list[bytes] = []
    sizes: list[tuple[int, int]] = []
    sources: list[Source | LiveSource | None] = []
    numbered: list[tuple[int, Transform]] = []
    frames: dict[int, FrameSlot] = {}
    for i, layer in enumerate(layers):
        if type(layer) is not Layer:
            raise InvalidTypeError(f"layers[{i}] must be a Layer, not {type(layer).__name__}")
        packed = layer.packed(engine_token, frame_size, i)
        parts.append(packed.record)
        sizes.append(packed.size)
        sources.append(packed.source)
        if packed.transform is not None:
            numbered.append((i, packed.transform))
        if packed.frame is not None:
            frames[packed.frame.index] = packed.frame
    records = np.frombuffer(b"".join(parts), LAYER_RECORD).copy()
    packed_transforms = _NO_TRANSFORMS
    transform_list: tuple[Transform, ...] = ()
    if numbered:
        numbers: dict[Transform, int] = {}
        for i, transform in numbered:
            records["transform"][i] = numbers.setdefault(transform, len(numbers) + 1)
        packed_transforms = np.zeros(len(numbers), TRANSFORM_RECORD)
        for transform, number in numbers.items():
            pack_transform(transform, packed_transforms[number - 1 : number])
        transform_list = tuple(numbers)
    return PackedLayers(
        records,
        packed_transforms,
        tuple(frames.values()),
        np.array(sizes, np.int64).reshape(-1, 2),
        tuple(sources),
        transform_list,
    )
