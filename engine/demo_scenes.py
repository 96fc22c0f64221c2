"""What the demo composites, and where its video comes from and goes to.

- :class:`ShowScene`: the designed studio show (``framering.showcase``): a backdrop, a live
  "camera" written in place by a producer thread every frame, a lower third sliding in and
  out, a semi-transparent logo and a clock.
- :class:`ClipScene`: a user's clip, decoded into a live source, under the same lower third
  and logo.
- :func:`open_video_writer` and :func:`open_clip`: PyAV (H.264 out, decode in the clip's own
  pixel format) where it is installed, OpenCV otherwise.

Where pixels are copied, and why (``docs/api.md`` says the same):

- camera: drawn straight into the live source's buffer (no copy);
- clip with PyAV: each decoded picture is copied once from the decoder's frame into the live
  source's buffer, in the clip's format (I420 for most H.264); the workers convert it to RGBA
  as they composite. With OpenCV: ``VideoCapture.read`` fills a reused BGR buffer that
  ``cvtColor(dst=)`` converts into the live source (one pass);
- compositing: none (workers read sources and write slots in shared memory);
- encoding with PyAV: the engine delivers I420, handed to libx264 without a copy
  (``framering.av``); with OpenCV: ``cvtColor(dst=)`` into a reused BGR buffer.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import cv2
import numpy as np

from framering import showcase
from framering.engine import Engine
from framering.layer import Layer
from framering.sources import LiveSource, Source

NAME, TITLE = "Ada Lovelace", "Analyst, live from the engine room"
# One cycle of the lower third: slides in at 1 s, out at 7 s, gone until 10 s.
LOWER_THIRD_CYCLE_S = 10.0


def have_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class Overlays:
    """The lower third and the logo, animated and placed for one frame size.

    ``placements`` is pure, so tests can rebuild the exact stack the demo composited.
    """

    width: int
    height: int
    lower_third: np.ndarray = field(init=False)
    logo: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.lower_third = showcase.lower_third(self.width, self.height, NAME, TITLE)
        self.logo = showcase.logo(self.height)

    def placements(self, t: float) -> list[tuple[str, int, int, float]]:
        """(which, x, y, opacity) at time ``t``: the lower third slides in from the left and
        out again, the logo breathes."""
        margin = round(0.05 * self.height)
        phase = t % LOWER_THIRD_CYCLE_S
        if phase < 1.0:
            shown = 0.0
        elif phase < 1.8:
            shown = _ease((phase - 1.0) / 0.8)
        elif phase < 7.0:
            shown = 1.0
        elif phase < 7.8:
            shown = 1.0 - _ease((phase - 7.0) / 0.8)
        else:
            shown = 0.0
        lower_w, lower_h = self.lower_third.shape[1], self.lower_third.shape[0]
        lower_x = round(-lower_w + shown * (lower_w + margin))
        lower_y = self.height - lower_h - margin
        logo_x = self.width - self.logo.shape[1] - margin
        return [
            ("lower", lower_x, lower_y, 1.0),
            ("logo", logo_x, margin, 0.7 + 0.15 * math.sin(t * 2.0)),
        ]


def _ease(x: float) -> float:
    return x * x * (3 - 2 * x)


def overlay_layers(overlays: Overlays, sources: dict[str, Source], t: float) -> list[Layer]:
    return [
        Layer(sources[which], x=x, y=y, opacity=opacity)
        for which, x, y, opacity in overlays.placements(t)
    ]


class Scene(Protocol):
    def __call__(self, t: float, index: int) -> list[Layer]: ...
    def layers(self, t: float) -> list[Layer]: ...
    def close(self) -> None: ...


class ShowScene:
    """The studio show. A producer thread paints the camera (and, each second, the clock)
    straight into their live sources at ``fps``, as a capture card would."""

    def __init__(self, eng: Engine, fps: float) -> None:
        width, height = eng.width, eng.height
        self.overlays = Overlays(width, height)
        self.background = eng.upload(showcase.background(width, height), opaque=True)
        self.sources = {
            "lower": eng.upload(self.overlays.lower_third),
            "logo": eng.upload(self.overlays.logo),
        }
        cam_w, cam_h = (width * 2 // 3) & ~1, (height * 2 // 3) & ~1
        self.painter = showcase.CameraPainter(cam_w, cam_h, fps)
        self.camera: LiveSource = eng.live_source(cam_w, cam_h, opaque=True)
        pill = showcase.clock(height, 0)
        self.clock: LiveSource = eng.live_source(pill.shape[1], pill.shape[0])
        self.camera_at = ((width - cam_w) // 2, (height - cam_h) * 2 // 5)
        self._fps = fps
        self._stop = threading.Event()
        self._paint(0, -1)
        self._producer = threading.Thread(target=self._produce, name="demo-camera", daemon=True)
        self._producer.start()

    def _paint(self, index: int, shown_second: int) -> int:
        with self.camera.write(timeout=1.0) as pixels:
            self.painter.paint(pixels, index)
        second = int(time.time())
        if second != shown_second:
            local = time.localtime(second)
            picture = showcase.clock(
                self.overlays.height, local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec
            )
            with self.clock.write(timeout=1.0) as pixels:
                pixels[...] = picture
        return second

    def _produce(self) -> None:
        started, index, second = time.perf_counter(), 1, -1
        while not self._stop.is_set():
            try:
                second = self._paint(index, second)
            except Exception:  # the engine closed under us: the show is over
                return
            index += 1
            delay = started + index / self._fps - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)

    def __call__(self, t: float, index: int) -> list[Layer]:
        return self.layers(t)

    def layers(self, t: float) -> list[Layer]:
        x, y = self.camera_at
        margin = round(0.05 * self.overlays.height)
        return [
            Layer(self.background),
            Layer(self.camera, x=x + round(12 * math.sin(t * 0.7)), y=y),
            *overlay_layers(self.overlays, self.sources, t),
            Layer(self.clock, x=margin, y=margin, opacity=0.9),
        ]

    def close(self) -> None:
        self._stop.set()
        self._producer.join(5)


class ClipScene:
    """A user's clip, decoded into a live source each tick, under the lower third and logo."""

    def __init__(self, eng: Engine, clip: ClipSource) -> None:
        self.clip_source = clip
        self.overlays = Overlays(eng.width, eng.height)
        self.sources = {
            "lower": eng.upload(self.overlays.lower_third),
            "logo": eng.upload(self.overlays.logo),
        }
        self.clip = eng.live_source(
            eng.width,
            eng.height,
            opaque=True,
            format=clip.format,
            yuv_matrix=clip.yuv_matrix,
            yuv_range=clip.yuv_range,
        )
        self.ended = False

    def __call__(self, t: float, index: int) -> list[Layer]:
        if not self.ended:
            with self.clip.write(timeout=1.0) as pixels:
                self.ended = not self.clip_source.read_into(pixels)
        return self.layers(t)

    def layers(self, t: float) -> list[Layer]:
        return [Layer(self.clip), *overlay_layers(self.overlays, self.sources, t)]

    def close(self) -> None:
        pass  # the clip belongs to whoever opened it


class ClipSource(Protocol):
    width: int
    height: int
    fps: float
    frames: int
    format: str
    yuv_matrix: str
    yuv_range: str

    def read_into(self, buffer: np.ndarray) -> bool: ...
    def close(self) -> None: ...


class OpenCVClip:
    """A clip decoded by OpenCV (BGR only), converted once into an RGBA live source."""

    format = "rgba"
    yuv_matrix, yuv_range = "bt709", "limited"  # unused: OpenCV hands over BGR

    def __init__(self, path: Path) -> None:
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise OSError(f"cannot open video {path}")
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frames = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self._bgr = np.empty((self.height, self.width, 3), np.uint8)  # reused every frame

    def read_into(self, buffer: np.ndarray) -> bool:
        ok, _ = self.capture.read(self._bgr)
        if ok:
            cv2.cvtColor(self._bgr, cv2.COLOR_BGR2RGBA, dst=buffer)
        return bool(ok)

    def close(self) -> None:
        self.capture.release()


def open_clip(path: Path, use_pyav: bool) -> ClipSource:
    if use_pyav:
        from framering.av import ClipReader  # the optional extra

        return ClipReader(path)
    return OpenCVClip(path)


class VideoWriter(Protocol):
    name: str
    input: str

    def write(self, frame: Any) -> None: ...
    def close(self) -> None: ...


class OpenCVWriter:
    """MPEG-4 part 2 (``.mp4``), FFV1 (``.mkv``, lossless) or Motion JPEG (``.avi``)."""

    input = "rgba"
    CODECS: ClassVar[dict[str, str]] = {".mp4": "mp4v", ".mkv": "FFV1", ".avi": "MJPG"}

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        codec = self.CODECS.get(path.suffix.lower(), "mp4v")
        self.name = f"OpenCV {codec}"
        self._writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height)
        )
        if not self._writer.isOpened():
            raise OSError(f"cannot write video {path} with codec {codec}")
        self._writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)  # used by MJPG; others ignore it
        self._bgr = np.empty((height, width, 3), np.uint8)

    def write(self, frame: Any) -> None:
        cv2.cvtColor(frame.pixels, cv2.COLOR_RGBA2BGR, dst=self._bgr)
        self._writer.write(self._bgr)

    def close(self) -> None:
        self._writer.release()


class PyAVWriter:
    """H.264 (libx264) for ``.mp4``/``.mov``/``.flv``, FFV1 for ``.mkv``, from I420 frames."""

    input = "i420"

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        from framering.av import Encoder  # the optional extra

        lossless = path.suffix.lower() == ".mkv"
        codec, options = ("ffv1", {}) if lossless else ("h264", {"preset": "veryfast"})
        self._encoder = Encoder(path, width, height, fps, codec, options=options)
        self.name = f"PyAV {self._encoder.codec_name}"

    def write(self, frame: Any) -> None:
        self._encoder.write(frame)

    def close(self) -> None:
        self._encoder.close()


def open_video_writer(
    path: Path, fps: float, width: int, height: int, use_pyav: bool
) -> VideoWriter:
    if use_pyav:
        return PyAVWriter(path, fps, width, height)
    return OpenCVWriter(path, fps, width, height)
