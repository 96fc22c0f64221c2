"""The layer table the kernels take: pictures, placement and blending, validated once.

:class:`PixelLayer` is one layer as a caller describes it; :class:`BufferTable` holds checked
buffers that many stacks can share; :class:`LayerStack` is the packed, immutable table of
addresses and integer geometry that ``composite_stack`` hands to the kernel, which trusts it
completely. Everything that could make a kernel read out of bounds is proven here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from framering.kernels.blend import BlendMode
from framering.kernels.codes import LAYER_OPAQUE
from framering.kernels.columns import (
    BAD_INDEX,
    BAD_MODE,
    BAD_OPACITY,
    BAD_X,
    BAD_Y,
    pack_columns,
)
from framering.kernels.validate import (
    INT32_MAX,
    MAX_SIDE,
    check_opacity,
    check_position,
    check_rgba,
)

_N_MODES = len(BlendMode)
# Layers fainter than this are dropped as invisible. Nothing below it can change a byte of
# premultiplied colour or alpha, and it keeps ``opacity / 255`` a normal float32 at least as
# large as the blend loops' smallest denominator, so that a pixel blended over a cleared run
# and over a zeroed one give the same bytes (which damage repair relies on, see ``spans``).
MIN_OPACITY = 1e-27


@dataclass(frozen=True, slots=True)
class PixelLayer:
    """One layer for the kernels: an RGBA8 picture, where it goes and how it blends.

    Attributes:
        pixels: (h, w, 4) uint8 C-contiguous RGBA8; read-only arrays are fine.
        x, y: where the layer's top-left pixel lands in the frame; may be negative or past the
            edge, the part outside the frame is clipped.
        opacity: global factor in [0, 1] applied on top of the per-pixel alpha.
        blend: a :class:`BlendMode` or its name (``"normal"``, ``"multiply"``, ...).
        premultiplied: the RGB channels are premultiplied by alpha.
        opaque: every alpha is 255 (lets the kernel copy instead of blend). ``None`` measures
            it by reading the alpha channel once. A wrong ``True`` gives wrong pixels, never a
            memory error: where the layer is copied (opacity 1, ``normal`` mode) its alpha is
            taken as 255, the same in a whole frame and in any box of it.
    """

    pixels: np.ndarray
    x: int = 0
    y: int = 0
    opacity: float = 1.0
    blend: BlendMode | str = BlendMode.NORMAL
    premultiplied: bool = False
    opaque: bool | None = None


def is_opaque(pixels: np.ndarray) -> bool:
    """True if every alpha byte of an RGBA8 picture is 255 (one read of the alpha channel)."""
    return bool(pixels[..., 3].min() == 255)


class BufferTable:
    """Layer buffers checked once: addresses, sizes and opaque flags, reusable by many stacks.

    Checking a buffer (dtype, shape, contiguity, alignment; scanning alpha when ``opaque`` is
    not given) is the costly part of preparing a stack; a caller that composites the same
    buffers frame after frame builds the table once. It keeps the buffers alive.
    """

    __slots__ = ("addresses", "buffers", "flags", "heights", "widths")

    def __init__(
        self, buffers: Sequence[np.ndarray], opaque: Sequence[bool | None] | None = None
    ) -> None:
        self.buffers = tuple(
            check_rgba(b, f"buffers[{i}]", writable=False) for i, b in enumerate(buffers)
        )
        if opaque is None:
            opaque = [None] * len(self.buffers)
        if len(opaque) != len(self.buffers):
            raise ValueError("opaque must give one value per buffer")
        self.flags = np.array(
            [
                LAYER_OPAQUE if (is_opaque(b) if o is None else bool(o)) else 0
                for b, o in zip(self.buffers, opaque, strict=True)
            ],
            dtype=np.int64,
        )
        self.addresses = np.array([b.ctypes.data for b in self.buffers], dtype=np.int64)
        self.widths = np.array([b.shape[1] for b in self.buffers], dtype=np.int64)
        self.heights = np.array([b.shape[0] for b in self.buffers], dtype=np.int64)
        for column in (self.flags, self.addresses, self.widths, self.heights):
            column.setflags(write=False)

    def __len__(self) -> int:
        return len(self.buffers)


class LayerStack:
    """A validated, packed table of layers for frames of one size, ready for the kernel.

    Build one with :meth:`prepare` (from :class:`PixelLayer` objects) or :meth:`from_buffers`
    (from columns, for callers that already hold arrays of positions). Layers that cannot
    change the frame (opacity 0, or entirely outside it) are dropped here. The stack keeps
    its buffers alive, so it may be reused for many frames while their pixels change.

    A stack is immutable: its columns are read-only arrays, because the kernel trusts them
    (a size or address changed after validation would make it read out of bounds). To move
    a layer, prepare a new stack; that costs microseconds.
    """

    __slots__ = (
        "_buffers",
        "addresses",
        "flags",
        "geometry",
        "height",
        "modes",
        "opacity",
        "width",
    )

    width: int
    height: int
    addresses: np.ndarray  # int64 (n,): address of each layer's first pixel
    geometry: np.ndarray  # int64 (n, 4): x, y, w, h
    opacity: np.ndarray  # float64 (n,)
    modes: np.ndarray  # int64 (n,): BlendMode values
    flags: np.ndarray  # int64 (n,): LAYER_OPAQUE | LAYER_PREMULTIPLIED (codes)
    _buffers: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(self.addresses.shape[0])

    @classmethod
    def prepare(cls, width: int, height: int, layers: Sequence[PixelLayer]) -> LayerStack:
        """Validate ``layers`` (bottom first) for a ``width`` x ``height`` frame and pack them."""
        if not isinstance(layers, Sequence):
            raise TypeError(f"layers must be a sequence of PixelLayer, not {type(layers).__name__}")
        buffers: list[np.ndarray] = []
        opaque: list[bool | None] = []
        slot_of: dict[int, int] = {}
        index, xs, ys, opacity, modes, premultiplied = [], [], [], [], [], []
        for i, layer in enumerate(layers):
            if not isinstance(layer, PixelLayer):
                raise TypeError(f"layers[{i}] must be a PixelLayer, not {type(layer).__name__}")
            key = id(layer.pixels)
            if key not in slot_of:
                slot_of[key] = len(buffers)
                buffers.append(check_rgba(layer.pixels, f"layers[{i}].pixels", writable=False))
                opaque.append(layer.opaque)
            elif layer.opaque is not None:
                opaque[slot_of[key]] = layer.opaque
            index.append(slot_of[key])
            xs.append(check_position(layer.x, f"layers[{i}].x"))
            ys.append(check_position(layer.y, f"layers[{i}].y"))
            opacity.append(check_opacity(layer.opacity, f"layers[{i}].opacity"))
            modes.append(int(BlendMode.parse(layer.blend)))
            if not isinstance(layer.premultiplied, bool | np.bool_):
                raise TypeError(f"layers[{i}].premultiplied must be a bool")
            premultiplied.append(bool(layer.premultiplied))
        return cls.from_buffers(
            width,
            height,
            buffers,
            index=np.array(index, dtype=np.int64),
            x=np.array(xs, dtype=np.int64),
            y=np.array(ys, dtype=np.int64),
            opacity=np.array(opacity, dtype=np.float64),
            modes=np.array(modes, dtype=np.int64),
            premultiplied=np.array(premultiplied, dtype=bool),
            opaque=opaque,
        )

    @classmethod
    def from_buffers(
        cls,
        width: int,
        height: int,
        buffers: Sequence[np.ndarray] | BufferTable,
        *,
        index: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        opacity: np.ndarray,
        modes: np.ndarray,
        premultiplied: np.ndarray,
        opaque: Sequence[bool | None] | None = None,
    ) -> LayerStack:
        """Pack a stack given as columns: layer ``i`` shows ``buffers[index[i]]``.

        Sizes and addresses come from the buffers themselves, so the kernel can never be told
        a wrong size. Every column is checked and packed in one compiled pass
        (``framering.kernels.columns``): microseconds for a frame's handful of layers, and
        cheap for stacks of thousands. Pass a :class:`BufferTable` (and no ``opaque``) to reuse
        buffers checked once for many stacks, as the engine's workers do.
        """
        width = check_position(width, "width")
        height = check_position(height, "height")
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ValueError(
                f"frame size must be between 1x1 and {MAX_SIDE}x{MAX_SIDE}, not {width}x{height}"
            )
        if isinstance(buffers, BufferTable):
            if opaque is not None:
                raise ValueError("a BufferTable carries its own opaque flags")
            table = buffers
        else:
            table = BufferTable(buffers, opaque)
        n = len(index)
        columns = {"index": index, "x": x, "y": y, "opacity": opacity, "modes": modes}
        columns["premultiplied"] = premultiplied
        for name, column in columns.items():
            if not isinstance(column, np.ndarray) or column.shape != (n,):
                raise ValueError(f"{name} must be a 1-d numpy array of {n} values")
        for name in ("index", "x", "y", "modes"):
            if columns[name].dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integers, not {columns[name].dtype}")
        if opacity.dtype.kind != "f":
            raise TypeError(f"opacity must hold floats, not {opacity.dtype}")
        if premultiplied.dtype != bool:
            raise TypeError(f"premultiplied must be a bool array, not {premultiplied.dtype}")
        for name in ("x", "y"):  # a cast of uint64 to int64 could wrap into range
            column = columns[name]
            if n and column.dtype == np.uint64 and column.max() > INT32_MAX:
                raise ValueError(f"{name} positions must fit in int32")
        problems, count, addresses, geometry, opacity, modes, flags = pack_columns(
            width,
            height,
            # fresh, writable, C-contiguous copies: one compiled signature for every caller
            # (a read-only or strided column would compile another, in a worker)
            np.array(index, np.int64),
            np.array(x, np.int64),
            np.array(y, np.int64),
            np.array(opacity, np.float64),
            np.array(modes, np.int64),
            np.array(premultiplied, bool),
            table.addresses,
            table.widths,
            table.heights,
            table.flags,
            _N_MODES,
            MIN_OPACITY,
        )
        if problems & BAD_INDEX:
            raise ValueError(f"index values must lie in [0, {len(table)})")
        if problems & BAD_X:
            raise ValueError("x positions must fit in int32")
        if problems & BAD_Y:
            raise ValueError("y positions must fit in int32")
        if problems & BAD_OPACITY:
            raise ValueError("opacity values must be finite floats in [0, 1]")
        if problems & BAD_MODE:
            raise ValueError(f"modes must be BlendMode values in [0, {_N_MODES})")

        return cls._assembled(
            width,
            height,
            addresses[:count],
            geometry[:count],
            opacity[:count],
            modes[:count],
            flags[:count],
            table.buffers,
        )

    def with_placement(
        self,
        x: np.ndarray | Sequence[int],
        y: np.ndarray | Sequence[int],
        opacity: np.ndarray | Sequence[float],
    ) -> LayerStack:
        """The same layers at new positions and opacities (one of each per layer, in stack
        order); the buffers, blend modes and flags are shared with this stack.

        A live scene moves and fades layers from frame to frame, and a packed stack made from
        scratch costs 10-40 us of Python; this is three checked columns. Every layer must
        still show: some part inside the frame, opacity finite and in ``[MIN_OPACITY, 1]``.
        A layer that would not is dropped from a stack, which only :meth:`from_buffers`
        does, so this raises ValueError for it: prepare a new stack then.
        """
        n = len(self)
        xs = np.array(x, dtype=np.int64)
        ys = np.array(y, dtype=np.int64)
        if xs.shape != (n,) or ys.shape != (n,):
            raise ValueError(f"x and y must give one value per layer of the stack ({n})")
        values = _checked_opacity(opacity, n)
        w, h = self.geometry[:, 2], self.geometry[:, 3]  # (inside the frame: within int32 too)
        if not ((xs < self.width) & (xs + w > 0) & (ys < self.height) & (ys + h > 0)).all():
            raise ValueError(
                "every layer must keep some part inside the frame (a layer outside it is "
                "dropped from a stack: prepare a new one)"
            )
        geometry = self.geometry.copy()
        geometry[:, 0] = xs
        geometry[:, 1] = ys
        return self._assembled(
            self.width, self.height, self.addresses, geometry, values, self.modes, self.flags,
            self._buffers,
        )  # fmt: skip

    def with_opacity(self, opacity: np.ndarray | Sequence[float]) -> LayerStack:
        """The same layers at new opacities (one per layer, in stack order); every other column
        is shared with this stack. A fade: :meth:`with_placement` without the moves."""
        return self._assembled(
            self.width, self.height, self.addresses, self.geometry,
            _checked_opacity(opacity, len(self)), self.modes, self.flags, self._buffers,
        )  # fmt: skip

    @staticmethod
    def _assembled(
        width: int,
        height: int,
        addresses: np.ndarray,
        geometry: np.ndarray,
        opacity: np.ndarray,
        modes: np.ndarray,
        flags: np.ndarray,
        buffers: tuple[np.ndarray, ...],
    ) -> LayerStack:
        """A stack of checked columns, made read-only (the one way a LayerStack is built)."""
        stack = LayerStack.__new__(LayerStack)
        stack.width = width
        stack.height = height
        stack.addresses = addresses
        stack.geometry = geometry
        stack.opacity = opacity
        stack.modes = modes
        stack.flags = flags
        stack._buffers = buffers  # last: from here on the stack refuses every attribute write
        for column in (addresses, geometry, opacity, modes, flags):
            column.setflags(write=False)
        return stack

    def reads_memory_of(self, array: np.ndarray) -> bool:
        """Some layer's buffer may overlap ``array`` (writing it would change what is read)."""
        return any(np.may_share_memory(array, buffer) for buffer in self._buffers)

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "_buffers"):
            raise AttributeError("a LayerStack is immutable; prepare a new one")
        object.__setattr__(self, name, value)


def _checked_opacity(opacity: np.ndarray | Sequence[float], n: int) -> np.ndarray:
    """New opacities for a stack of ``n`` layers, as a fresh float64 column, or ValueError."""
    values = np.array(opacity, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"opacity must give one value per layer of the stack ({n})")
    if not ((values >= MIN_OPACITY) & (values <= 1.0)).all():  # NaN fails too
        raise ValueError(
            f"opacity values must be finite floats in [{MIN_OPACITY}, 1] (a layer at opacity 0 "
            "is dropped from a stack: prepare a new one)"
        )
    return values
