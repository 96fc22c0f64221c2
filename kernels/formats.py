"""The pixel formats frames are delivered in and sources come in: what each one looks like.

Facts only, no arithmetic on pixels: a format's numpy shape, its size in bytes, whether it is
4:2:0, its wire code, and where the planes of a 4:2:0 picture lie. Every layout is the one
``cv2`` uses, so a ``cv2`` array can be passed as it is::

    format       numpy shape      bytes
    rgba, bgra   (h, w, 4)        4 bytes a pixel
    rgb, bgr     (h, w, 3)        3 bytes a pixel, no alpha
    i420         (h * 3 / 2, w)   the Y plane, then the U (Cb) plane, then the V (Cr) plane,
                                  each chroma plane (h / 2) x (w / 2)
    nv12         (h * 3 / 2, w)   the Y plane, then interleaved U V pairs

:func:`yuv420_planes` is the one statement of where 4:2:0 chroma lies. It is plain Python,
compiled as well for the kernels (:data:`yuv420_planes_kernel`): the conversion kernels, the
float64 references and the tests read the same offsets, from the same lines.
"""

from __future__ import annotations

import enum

import numpy as np

from framering.kernels.codes import FORMAT_I420, format_code, format_name
from framering.kernels.jit import KERNEL_INLINE


class FrameFormat(enum.Enum):
    """Layouts a frame can be delivered in, or a source can come in.

    The members' order is their code (``framering.kernels.codes``: ``FORMAT_NAMES``), which
    the engine's ring header stores: new formats go at the end.
    """

    RGBA = "rgba"
    BGRA = "bgra"
    BGR = "bgr"
    I420 = "i420"
    NV12 = "nv12"
    RGB = "rgb"

    @property
    def code(self) -> int:
        """The format's wire and kernel code (``codes.FORMAT_*``)."""
        return format_code(self.value)

    @classmethod
    def from_code(cls, code: int) -> FrameFormat:
        """The format of a code; ``ValueError`` if there is none."""
        return cls(format_name(code))

    @property
    def yuv420(self) -> bool:
        """Planar 4:2:0 (I420, NV12): even width and height, rows converted in pairs."""
        return self in (FrameFormat.I420, FrameFormat.NV12)

    def shape(self, width: int, height: int) -> tuple[int, ...]:
        """The numpy shape of a frame of this format (what ``cv2`` uses)."""
        if self in (FrameFormat.RGBA, FrameFormat.BGRA):
            return (height, width, 4)
        if self in (FrameFormat.RGB, FrameFormat.BGR):
            return (height, width, 3)
        return (height * 3 // 2, width)

    def nbytes(self, width: int, height: int) -> int:
        """Bytes of a frame of this format."""
        return int(np.prod(self.shape(width, height)))

    def check_size(self, width: int, height: int) -> None:
        """Raise ``ValueError`` unless a ``width`` x ``height`` picture fits this format
        (4:2:0 needs an even width and height)."""
        if self.yuv420 and (width % 2 or height % 2):
            raise ValueError(f"{self.value} needs an even width and height, not {width}x{height}")

    def planes(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``(cb, cr, step, pitch)`` of a 4:2:0 picture: see :func:`yuv420_planes`."""
        if not self.yuv420:
            raise ValueError(f"{self.value} has no chroma planes")
        return yuv420_planes(self.code, width, height)


def source_shape(fmt: FrameFormat | str, width: int, height: int) -> tuple[int, ...]:
    """The numpy shape of a ``width`` x ``height`` picture in format ``fmt``."""
    return FrameFormat(fmt).shape(width, height)


def yuv420_planes(code, width, height):  # type: ignore[no-untyped-def]
    """Where the chroma of a ``width`` x ``height`` 4:2:0 picture lies in its bytes.

    ``code`` is ``FORMAT_I420`` or ``FORMAT_NV12``. Returns ``(cb, cr, step, pitch)``, in
    bytes from the picture's first byte: chroma sample ``(i, j)`` (block row ``i``, block
    column ``j``) is at ``cb + i * pitch + j * step`` for Cb and ``cr + i * pitch + j * step``
    for Cr. The luma plane comes first, ``width * height`` bytes, a row every ``width``.

    - I420: a Cb plane then a Cr plane, each ``(height / 2) x (width / 2)``: ``step`` 1,
      ``pitch = width / 2``, Cr a quarter of the luma size after Cb.
    - NV12: one plane of interleaved Cb Cr pairs: ``step`` 2, ``pitch = width``, Cr one byte
      after Cb.

    Plain Python, called as it is from Python and compiled into the kernels as
    :data:`yuv420_planes_kernel`.
    """
    luma = width * height
    if code == FORMAT_I420:
        return luma, luma + luma // 4, 1, width // 2
    return luma, luma + 1, 2, width


#: :func:`yuv420_planes` for the kernels (inlined: a few integer operations, once a call).
yuv420_planes_kernel = KERNEL_INLINE(yuv420_planes)
