"""Every number that names something across a process boundary or a JIT call, in one place.

Wherever a name travels as a number (a ring header, a wire message, a layer record, an argument
of a compiled kernel), the number comes from here, with both directions beside it (name to code
and code to name), so nobody numbers an enum a second time or builds an inverse dict of their
own. The codes are part of the engine's shared-memory layouts and of its protocol: never
renumber one; new codes go at the end.

=============  ===========================================  ==================================
what           codes                                        travels in
=============  ===========================================  ==================================
pixel format   0 rgba, 1 bgra, 2 bgr, 3 i420, 4 nv12,       the ring header (u8), ATTACH, the
               5 rgb: the order of ``FrameFormat``          conversion kernels' ``code``
               (``FrameFormat.code``, ``.from_code``)
no delivery    ``NO_DELIVERY`` = -1, not a format: only     the whole-stack kernel's
               the kernels take it                          ``out_code``
YUV matrix     0 bt601, 1 bt709                             the ring header, ATTACH
YUV range      0 limited, 1 full                            the ring header, ATTACH
layer flags    bits: 1 opaque, 2 premultiplied, 4 frame     layer records (u8), the
                                                            ``LayerStack.flags`` column
blend mode     ``BlendMode``'s values (an ``IntEnum`` in    layer records (u8), the
               ``framering.kernels.blend``: one numbering   ``LayerStack.modes`` column
               already, not repeated here)
=============  ===========================================  ==================================

Plain ints (``Final``): Numba freezes module-level ints as constants in the kernels that compare
against them, so a kernel dispatches on exactly these numbers.
"""

from __future__ import annotations

import numbers
from typing import Final

import numpy as np

# Pixel formats, in the order of FrameFormat's members (``FORMAT_NAMES[code]`` is the
# FrameFormat value). The ring header stores a delivery format as this code.
FORMAT_RGBA: Final = 0
FORMAT_BGRA: Final = 1
FORMAT_BGR: Final = 2
FORMAT_I420: Final = 3
FORMAT_NV12: Final = 4
FORMAT_RGB: Final = 5
FORMAT_NAMES: Final = ("rgba", "bgra", "bgr", "i420", "nv12", "rgb")

# What the whole-stack kernel is told to deliver when it converts nothing: no delivery buffer,
# or an RGBA delivery whose buffer is the frame itself. Outside the format codes on purpose, so
# that it can never be mistaken for one; never stored or sent.
NO_DELIVERY: Final = -1

# YUV matrices (``MATRIX_NAMES[code]``) and value ranges (``RANGE_NAMES[code]``).
MATRIX_BT601: Final = 0
MATRIX_BT709: Final = 1
MATRIX_NAMES: Final = ("bt601", "bt709")
RANGE_LIMITED: Final = 0
RANGE_FULL: Final = 1
RANGE_NAMES: Final = ("limited", "full")

# Bits of a layer's flags: in the engine's layer records and in LayerStack's flags column,
# which the whole-stack kernel reads.
LAYER_OPAQUE: Final = 1  # every alpha byte of the layer's buffer is 255
LAYER_PREMULTIPLIED: Final = 2  # RGB is premultiplied by alpha
LAYER_FRAME: Final = 4  # records only: the source is a finished frame of the ring (its slot)


def _code(names: tuple[str, ...], name: object, what: str) -> int:
    if isinstance(name, str) and name in names:
        return names.index(name)
    raise ValueError(f"{what} must be one of {', '.join(names)}, not {name!r}")


def _name(names: tuple[str, ...], code: object, what: str) -> str:
    # any integer, numpy's too (a field of a record); bool is an int, but True is no code
    integer = isinstance(code, numbers.Integral) and not isinstance(code, bool | np.bool_)
    if integer and 0 <= int(code) < len(names):
        return names[int(code)]
    choices = ", ".join(f"{i} ({name})" for i, name in enumerate(names))
    raise ValueError(f"{what} code must be one of {choices}, not {code!r}")


def format_code(name: str) -> int:
    """The code of a pixel format's name (``"i420"`` -> 3); ``ValueError`` if unknown."""
    return _code(FORMAT_NAMES, name, "format")


def format_name(code: int) -> str:
    """The name of a pixel format's code (3 -> ``"i420"``); ``ValueError`` if unknown."""
    return _name(FORMAT_NAMES, code, "format")


def matrix_code(name: str) -> int:
    """The code of a YUV matrix (``"bt709"`` -> 1); ``ValueError`` if unknown."""
    return _code(MATRIX_NAMES, name, "matrix")


def matrix_name(code: int) -> str:
    """The YUV matrix of a code (1 -> ``"bt709"``); ``ValueError`` if unknown."""
    return _name(MATRIX_NAMES, code, "matrix")


def range_code(name: str) -> int:
    """The code of a YUV value range (``"full"`` -> 1); ``ValueError`` if unknown."""
    return _code(RANGE_NAMES, name, "range")


def range_name(code: int) -> str:
    """The YUV value range of a code (1 -> ``"full"``); ``ValueError`` if unknown."""
    return _name(RANGE_NAMES, code, "range")
