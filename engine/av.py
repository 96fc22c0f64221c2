"""Real encoders through PyAV (FFmpeg's libraries): finished frames out as H.264 and friends.

``pip install 'framering[av]'``. An :class:`Encoder` takes what the engine delivers (a finished
:class:`~framering.FrameSlot`, a :class:`~framering.StreamFrame` of ``eng.stream()``, or the
array ``wait()`` returned) in the engine's ``output`` format and muxes it to any FFmpeg target:
a file, ``rtmp://``, ``srt://``::

    with Engine(1920, 1080, output="i420") as eng, Encoder("show.mp4", 1920, 1080, 60) as out:
        for frame in eng.stream(scene, fps=60, frames=600, policy="block"):
            out.write(frame)

Where pixels are copied:

- A :class:`FrameSlot` is never copied: the encoder wraps the slot's shared memory in the
  AVFrame it sends, takes the slot over and releases it once FFmpeg lets go of that memory
  (at once for encoders that copy their input, such as libx264; later for those that keep
  frames). Do not release a slot you handed to :meth:`Encoder.write`.
- A ``StreamFrame`` or an array is wrapped without a copy too when the encoder is one that
  copies its input before ``encode()`` returns (:data:`COPIES_INPUT`; a test checks libx264
  does), because ``eng.stream()`` reuses the memory once the next frame is asked for. For any
  other encoder it is copied once into a new AVFrame.
- RGB-family input is converted by FFmpeg (swscale) into the codec's pixel format: deliver
  ``i420`` (or ``nv12``) from the engine to avoid it.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from fractions import Fraction
from types import TracebackType
from typing import Any, Final

import numpy as np

try:
    import av
except ImportError as error:  # pragma: no cover - exercised where PyAV is missing
    raise ImportError("framering.av needs PyAV: pip install 'framering[av]'") from error

from framering.clock import StreamFrame
from framering.errors import FrameringError, InvalidValueError, SlotStateError
from framering.kernels import FrameFormat
from framering.slots import FrameSlot

# The engine's output formats as FFmpeg names them.
AV_FORMATS: Final = {
    "i420": "yuv420p",
    "nv12": "nv12",
    "rgba": "rgba",
    "bgra": "bgra",
    "rgb": "rgb24",
    "bgr": "bgr24",
}
# Encoders that copy an input frame into their own pictures before ``encode()`` returns, so
# the memory it came from may be reused at once (checked for libx264 by the tests).
COPIES_INPUT: Final = frozenset({"libx264", "libx265", "libopenh264"})
# The engine's YUV matrices and ranges as FFmpeg's colour tags (AVColorSpace, AVColorPrimaries,
# AVColorTransferCharacteristic; AVColorRange): untagged video is decoded as the player
# guesses, which FFmpeg does as BT.601 limited.
_MATRIX_TAGS: Final = {"bt709": (1, 1, 1), "bt601": (6, 6, 6)}  # space, primaries, transfer
_RANGE_TAGS: Final = {"limited": 1, "full": 2}
# 4:2:0 formats: PyAV's from_numpy_buffer reads their height back from the rows of the array
# (rows // 6 * 4), which is wrong unless the height is a multiple of 4.
_YUV420: Final = frozenset({"yuv420p", "nv12"})


class Encoder:
    """Encode finished frames to ``target`` (a path or an FFmpeg URL) with PyAV.

    Args:
        target: a file (``.mp4``, ``.mkv``, ...) or a URL FFmpeg can mux to.
        width, height, fps: the frames' size and rate (time stamps are ``index / fps``).
        codec: an FFmpeg encoder name (``h264`` picks libx264 where available, ``ffv1``
            is lossless).
        input: the engine's ``output`` format: ``i420`` (default), ``nv12``, ``rgba``,
            ``bgra``, ``rgb`` or ``bgr``.
        pixel_format: the codec's pixel format (default: the input's if the codec takes it,
            else ``yuv420p``).
        container_format: FFmpeg's muxer name, when ``target`` does not say it (e.g.
            ``flv`` for ``rtmp://``, ``mpegts`` for ``srt://``).
        yuv_matrix, yuv_range: the engine's (``bt709`` or ``bt601``, ``limited`` or
            ``full``): the stream and every frame are tagged with them, so that a player
            decodes the colours the engine meant instead of guessing.
        options, codec_options: encoder options, as a dict or as keywords:
            ``Encoder("show.mp4", 1920, 1080, 60, preset="veryfast", crf="20")``.
    """

    def __init__(
        self,
        target: str | Any,
        width: int,
        height: int,
        fps: float,
        codec: str = "h264",
        *,
        input: str = "i420",
        pixel_format: str | None = None,
        container_format: str | None = None,
        yuv_matrix: str = "bt709",
        yuv_range: str = "limited",
        options: dict[str, str] | None = None,
        **codec_options: str,
    ) -> None:
        if input not in AV_FORMATS:
            raise InvalidValueError(f"input must be one of {', '.join(AV_FORMATS)}, not {input!r}")
        if yuv_matrix not in _MATRIX_TAGS:
            raise InvalidValueError(f"yuv_matrix must be bt709 or bt601, not {yuv_matrix!r}")
        if yuv_range not in _RANGE_TAGS:
            raise InvalidValueError(f"yuv_range must be limited or full, not {yuv_range!r}")
        self._colorspace, primaries, transfer = _MATRIX_TAGS[yuv_matrix]
        self._color_range = _RANGE_TAGS[yuv_range]
        self.width, self.height = int(width), int(height)
        self.input = input
        self._av_format = AV_FORMATS[input]
        self._rate = Fraction(fps).limit_denominator(1001)
        # a path or URL, or a writable binary file object (container_format then says how)
        where = str(target) if isinstance(target, str | os.PathLike) else target
        self._container = av.open(where, "w", format=container_format)
        try:
            self._stream = self._container.add_stream(codec, rate=self._rate)
            self._stream.width, self._stream.height = self.width, self.height
            supported = [f.name for f in self._stream.codec.video_formats or ()]
            self._stream.pix_fmt = pixel_format or (
                self._av_format if self._av_format in supported else "yuv420p"
            )
            merged = {**(options or {}), **{k: str(v) for k, v in codec_options.items()}}
            if merged:
                self._stream.options = merged
            context = self._stream.codec_context
            context.time_base = 1 / self._rate
            context.colorspace, context.color_range = self._colorspace, self._color_range
            context.color_primaries, context.color_trc = primaries, transfer
        except BaseException:
            self._container.close()
            raise
        self.codec_name: str = self._stream.codec_context.codec.name
        self._zero_copy_arrays = self.codec_name in COPIES_INPUT
        # PyAV can wrap the engine's memory for this size and format (see _YUV420)
        self._wraps_buffers = not (self._av_format in _YUV420 and self.height % 4)
        self._index = 0
        self._closed = False

    def __enter__(self) -> Encoder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._index

    def write(self, frame: FrameSlot | StreamFrame | np.ndarray) -> None:
        """Encode one finished frame (see the module docstring for who owns its memory)."""
        if self._closed:
            raise SlotStateError("the encoder was closed")
        slot = frame if isinstance(frame, FrameSlot) else None
        if slot is not None:
            pixels = slot.wait(0)  # raises if the frame is not finished or failed
        elif isinstance(frame, StreamFrame):
            pixels = frame.pixels
        else:
            pixels = frame
        self._check(pixels)
        if not self._wraps_buffers or (slot is None and not self._zero_copy_arrays):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), self._av_format)
            if slot is not None:  # copied: the slot is free at once
                _release_quietly(slot)
        else:
            view = pixels.view()  # its life is the AVFrame buffer's life
            if slot is not None:
                weakref.finalize(view, _release_quietly, slot)
            picture = av.VideoFrame.from_numpy_buffer(view, self._av_format)
            del view
        picture.pts = self._index
        picture.colorspace, picture.color_range = self._colorspace, self._color_range
        self._index += 1
        packets = self._stream.encode(picture)
        del picture  # FFmpeg's reference is all that may keep the slot now
        for packet in packets:
            self._container.mux(packet)

    def _check(self, pixels: np.ndarray) -> None:
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
            raise InvalidValueError("the encoder takes uint8 frames as the engine delivers them")
        if self.input in ("i420", "nv12"):
            shape: tuple[int, ...] = (self.height * 3 // 2, self.width)
        else:
            shape = (self.height, self.width, 4 if self.input in ("rgba", "bgra") else 3)
        if pixels.shape != shape:
            raise InvalidValueError(
                f"a {self.input} frame of {self.width}x{self.height} has shape {shape}, not "
                f"{pixels.shape}: is the engine's output {self.input!r}?"
            )

    def close(self) -> None:
        """Flush the encoder and close the target (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()


def _release_quietly(slot: FrameSlot) -> None:
    """Give a slot back once FFmpeg let go of its memory (the engine may be closed by then)."""
    if not slot.released:
        with contextlib.suppress(FrameringError):  # a closed engine released everything
            slot.release()


# Decoder pixel formats a live source takes as they are; anything else is converted to BGR.
_LIVE_FORMATS: Final = {"yuv420p": "i420", "yuvj420p": "i420", "nv12": "nv12", "bgr24": "bgr"}
# FFmpeg's AVColorSpace tags the engine reads: BT.709, and BT.601 (BT470BG, SMPTE 170M).
_MATRIX_OF_COLORSPACE: Final = {1: "bt709", 5: "bt601", 6: "bt601"}


class ClipReader:
    """Decode a clip with PyAV straight into a live source's buffers, in the clip's format.

    ``format`` is what to make the live source with (``i420`` for most H.264 clips, ``nv12``,
    or ``bgr`` for anything else, converted by FFmpeg): the workers convert it to RGBA as
    they composite, so the caller never does. Each picture is copied once, from the
    decoder's frame into the live source's shared memory (the decoder owns its buffers).

    ``yuv_matrix`` and ``yuv_range`` are how the clip's YUV is to be read (make the live source
    with them): from the clip's colour tags, else ``full`` for JPEG-range (``yuvj``) pixel
    formats and BT.601 below 720 rows, as FFmpeg assumes.
    """

    def __init__(self, path: str | Any) -> None:
        self._container = av.open(str(path))
        try:
            self._stream = self._container.streams.video[0]
        except IndexError:
            self._container.close()
            raise InvalidValueError(f"{path} has no video stream") from None
        self._stream.thread_type = "AUTO"
        context = self._stream.codec_context
        self.width: int = context.width
        self.height: int = context.height
        rate = self._stream.average_rate or self._stream.guessed_rate or 30
        self.fps: float = float(rate)
        self.frames: int = self._stream.frames  # 0 when the container does not say
        self._decoder_format = context.pix_fmt or "yuv420p"
        self.format: str = _LIVE_FORMATS.get(self._decoder_format, "bgr")
        if self.format in ("i420", "nv12") and (self.width % 2 or self.height % 2):
            self.format = "bgr"  # 4:2:0 needs even sizes
        self.yuv_range: str = (
            "full"
            if context.color_range == 2 or self._decoder_format.startswith("yuvj")
            else "limited"
        )
        tagged = _MATRIX_OF_COLORSPACE.get(context.colorspace)
        self.yuv_matrix: str = tagged or ("bt709" if self.height >= 720 else "bt601")
        self._decoded = self._container.decode(self._stream)

    def read_into(self, buffer: np.ndarray) -> bool:
        """Decode the next picture into ``buffer`` (a live source's ``write()`` view);
        False at the end of the clip."""
        try:
            frame = next(self._decoded)
        except StopIteration:
            return False
        if self.format == "bgr":
            buffer[...] = frame.to_ndarray(format="bgr24")
            return True
        w, h = self.width, self.height
        flat = buffer.reshape(-1)
        planes = [(frame.planes[0], w, h, 0)]
        if self.format == "i420":
            cb, cr, _, pitch = FrameFormat.I420.planes(w, h)
            planes += [(frame.planes[1], pitch, h // 2, cb), (frame.planes[2], pitch, h // 2, cr)]
        else:
            planes += [(frame.planes[1], w, h // 2, w * h)]
        for plane, row_bytes, rows, offset in planes:
            source = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows]
            flat[offset : offset + rows * row_bytes].reshape(rows, row_bytes)[...] = source[
                :, :row_bytes
            ]
        return True

    def close(self) -> None:
        self._container.close()
