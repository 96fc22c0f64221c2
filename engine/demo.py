"""The live demo: the studio-1080p reference scene, animated, composited by the engine.

A paced loop, the way a streaming tool drives a compositor (``Engine.stream``): every tick the
scene writes the next camera picture into a live source and returns the frame's layer stack;
finished frames come back in order on the clock and go to an MP4 if asked, the last one to a
PNG. A status line shows frame rate, latency, late/dropped frames, delivery jitter and each
worker's CPU and memory.

With ``input``, a user's clip is decoded with OpenCV into a live source and composited under
the demo's overlays (lower third, logo). Where pixels are copied, and why:

- decoding: ``VideoCapture.read`` fills a reusable BGR buffer (OpenCV decodes to BGR only),
  and ``cv2.cvtColor(..., dst=)`` converts it straight into the live source's shared-memory
  buffer: one conversion pass, no new array per frame;
- compositing: none; workers read the live source and write the slot in shared memory;
- encoding: ``VideoWriter`` takes BGR, so ``cv2.cvtColor(..., dst=)`` converts the slot's view
  into a reusable BGR buffer: one conversion pass, no new array per frame.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import psutil

from framering.engine import Engine
from framering.kernels.workloads import build
from framering.layer import Layer
from framering.sources import LiveSource, Source
from framering.stream import StreamFrame

STATUS_INTERVAL_S = 0.5


@dataclass
class DemoResult:
    """What one run of the demo measured."""

    frames: int
    late: int
    dropped: int
    seconds: float
    latency_p50: float
    latency_p99: float
    jitter_p99: float
    png: Path
    output: Path | None


@dataclass
class Overlays:
    """The studio scene's lower third and logo, animated and placed for any frame size.

    ``placements`` is pure, so tests can rebuild the exact stack the demo composited.
    """

    lower_third: np.ndarray
    logo: np.ndarray
    lower_opacity: float
    width: int = 1920
    height: int = 1080
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def studio(cls, width: int = 1920, height: int = 1080) -> Overlays:
        workload = build("studio-1080p")
        _, _, lower, logo = workload.layers
        # the reference positions, scaled to the frame (the recipe is for 1920x1080)
        positions = {
            "lower": (round(lower.x * width / 1920), round(lower.y * height / 1080)),
            "logo": (round(logo.x * width / 1920), round(logo.y * height / 1080)),
        }
        return cls(lower.pixels, logo.pixels, lower.opacity, width, height, positions)

    def placements(self, t: float) -> list[tuple[str, int, int, float]]:
        """(which, x, y, opacity) at time ``t``: the lower third slides in, the logo pulses."""
        low_x, low_y = self.positions["lower"]
        slide = min(1.0, t / 1.5)
        logo_x, logo_y = self.positions["logo"]
        return [
            ("lower", low_x, int(low_y + (1 - slide) * (self.height - low_y)), self.lower_opacity),
            ("logo", logo_x, logo_y, 0.6 + 0.4 * math.sin(t * 4.0)),
        ]


class StudioScene:
    """The reference scene: background, a live 'camera' (the recipe picture with a moving
    bar), and the overlays."""

    def __init__(self, eng: Engine) -> None:
        workload = build("studio-1080p")
        background, camera, _, _ = workload.layers
        self.overlays = Overlays.studio()
        self.background: Source = eng.upload(background.pixels)
        self.sources = {
            "lower": eng.upload(self.overlays.lower_third),
            "logo": eng.upload(self.overlays.logo),
        }
        self.camera_picture = camera.pixels
        self.camera: LiveSource = eng.live_source(
            camera.pixels.shape[1], camera.pixels.shape[0], opaque=True
        )
        self.camera_at = (camera.x, camera.y)

    def __call__(self, t: float, index: int) -> list[Layer]:
        with self.camera.write(timeout=1.0) as pixels:  # a new camera picture every tick
            pixels[...] = self.camera_picture
            bar = (index * 8) % pixels.shape[1]
            pixels[:, bar : bar + 24, :3] = 255
        return self.layers(t)

    def layers(self, t: float) -> list[Layer]:
        """The stack at time ``t`` with the camera's latest picture (no new picture)."""
        x, y = self.camera_at
        layers = [
            Layer(self.background),
            Layer(self.camera, x=x + int(60 * math.sin(t * 1.3)), y=y),
        ]
        return layers + overlay_layers(self.overlays, self.sources, t)


class ClipScene:
    """A user's clip, decoded into a live source, under the demo's overlays."""

    def __init__(self, eng: Engine, capture: cv2.VideoCapture) -> None:
        self.capture = capture
        self.overlays = Overlays.studio(eng.width, eng.height)
        self.sources = {
            "lower": eng.upload(self.overlays.lower_third),
            "logo": eng.upload(self.overlays.logo),
        }
        self.clip = eng.live_source(eng.width, eng.height, opaque=True)
        self.bgr = np.empty((eng.height, eng.width, 3), np.uint8)  # reused for every frame
        self.ended = False

    def __call__(self, t: float, index: int) -> list[Layer]:
        ok, _ = self.capture.read(self.bgr)
        if ok:
            with self.clip.write(timeout=1.0) as pixels:
                cv2.cvtColor(self.bgr, cv2.COLOR_BGR2RGBA, dst=pixels)
        else:
            self.ended = True  # keeps showing the last picture until the stream stops
        return self.layers(t)

    def layers(self, t: float) -> list[Layer]:
        """The stack at time ``t`` with the latest decoded picture (decodes nothing)."""
        return [Layer(self.clip), *overlay_layers(self.overlays, self.sources, t)]


def overlay_layers(overlays: Overlays, sources: dict[str, Source], t: float) -> list[Layer]:
    return [
        Layer(sources[which], x=x, y=y, opacity=opacity)
        for which, x, y, opacity in overlays.placements(t)
    ]


def _worker_status(eng: Engine, processes: dict[int, psutil.Process]) -> str:
    parts = []
    for pid in eng.worker_pids():
        process = processes.get(pid)
        if process is None:
            process = processes[pid] = psutil.Process(pid)
            process.cpu_percent(None)
        try:
            cpu = process.cpu_percent(None)
            parts.append(f"{pid}: {cpu:3.0f}% {process.memory_info().rss / 2**20:.0f} MB")
        except psutil.Error:
            parts.append(f"{pid}: gone")
    return ", ".join(parts)


def open_clip(path: Path) -> tuple[cv2.VideoCapture, int, int, float, int]:
    """(capture, width, height, fps, frame count) of a video file."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError(f"cannot open video {path}")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return capture, width, height, fps, count


# Codec by file suffix: MPEG-4 part 2 for .mp4 (plays everywhere, lossy), FFV1 for .mkv
# (lossless: every pixel as composited, for checking or further editing), Motion JPEG .avi.
CODECS = {".mp4": "mp4v", ".mkv": "FFV1", ".avi": "MJPG"}


def open_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    codec = CODECS.get(path.suffix.lower(), "mp4v")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write video {path} with codec {codec}")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 100)  # used by MJPG; others ignore it
    return writer


def run_demo(
    *,
    fps: float | None = None,
    seconds: float = 5.0,
    workers: int | None = None,
    slots: int = 8,
    png: Path = Path("framering-demo.png"),
    output: Path | None = None,
    input: Path | None = None,
) -> DemoResult:
    """Run the paced live loop; returns what it measured.

    Without ``input``: the animated studio scene at ``fps`` (default 60) for ``seconds``.
    With ``input``: the clip at its own rate (or ``fps``) until it ends (or ``seconds``).
    Writing ``output`` uses the ``block`` policy (no frame may be missing from a file); a
    live run uses ``drop`` (a late frame is skipped, never queued).
    """
    capture = None
    width, height = 1920, 1080
    rate = fps or 60.0
    count = round(seconds * rate)
    if input is not None:
        capture, width, height, clip_fps, clip_frames = open_clip(input)
        rate = fps or clip_fps
        count = min(round(seconds * rate), clip_frames) if clip_frames > 0 else count
    print("starting workers (the first run compiles the kernels) ...", file=sys.stderr, flush=True)
    writer = None
    bgr = np.empty((height, width, 3), np.uint8)
    try:
        with Engine(width, height, slots=slots, workers=workers) as eng:
            scene = StudioScene(eng) if capture is None else ClipScene(eng, capture)
            if output is not None:
                writer = open_writer(output, rate, width, height)
            processes: dict[int, psutil.Process] = {}
            latencies: list[float] = []
            delivered = 0
            last: StreamFrame | None = None
            started = time.perf_counter()
            next_status = started + STATUS_INTERVAL_S
            policy = "block" if writer is not None else "drop"
            for frame in eng.stream(scene, fps=rate, frames=count, policy=policy):
                latencies.append((frame.finished_ns - frame.submitted_ns) / 1e9)
                if writer is not None:
                    cv2.cvtColor(frame.pixels, cv2.COLOR_RGBA2BGR, dst=bgr)
                    writer.write(bgr)
                delivered += 1
                last = frame
                if time.perf_counter() >= next_status:
                    next_status += STATUS_INTERVAL_S
                    m = eng.metrics()
                    print(
                        f"\r{delivered / (time.perf_counter() - started):6.1f} fps | latency "
                        f"p50 {m.latency_p50 * 1e3:5.2f} ms p99 {m.latency_p99 * 1e3:5.2f} ms | "
                        f"late {m.stream_late} dropped {m.stream_dropped} repeated "
                        f"{m.stream_repeated} | jitter p99 "
                        f"{m.delivery_jitter_p99 * 1e3:4.1f} ms | workers "
                        f"{_worker_status(eng, processes)}   ",
                        end="",
                        file=sys.stderr,
                        flush=True,
                    )
                if isinstance(scene, ClipScene) and scene.ended:
                    break
            elapsed = time.perf_counter() - started
            print(file=sys.stderr)
            if last is None:
                raise RuntimeError("the demo delivered no frame")
            # the last tick once more, as a copy that outlives the engine, for the PNG
            picture = eng.render(scene.layers(last.pts))
            metrics = eng.metrics()
    finally:
        if writer is not None:
            writer.release()
        if capture is not None:
            capture.release()
    if not cv2.imwrite(str(png), cv2.cvtColor(picture, cv2.COLOR_RGBA2BGRA)):
        raise OSError(f"could not write {png}")
    lat = np.array(latencies)
    return DemoResult(
        frames=delivered,
        late=metrics.stream_late,
        dropped=metrics.stream_dropped,
        seconds=elapsed,
        latency_p50=float(np.percentile(lat, 50)),
        latency_p99=float(np.percentile(lat, 99)),
        jitter_p99=metrics.delivery_jitter_p99,
        png=png,
        output=output,
    )
