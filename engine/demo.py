"""The live demo: a designed studio show, composited by the engine on a clock.

A paced loop, the way a streaming tool drives a compositor (``Engine.stream``): every tick the
scene returns the frame's layer stack while a producer thread paints the camera in place;
finished frames come back in order and go to an encoder if asked (H.264 through PyAV where it
is installed, OpenCV otherwise), the last one to a PNG and, with ``contact_sheet``, a grid of
frames spread over the run to another. A status line shows frame rate, latency, late and
dropped frames, delivery jitter, the share of pixels recomposited (damage tracking), the
encoder and each worker's CPU and memory.

With ``input``, a user's clip is decoded into a live source and composited under the show's
lower third and logo. ``framering.demo_scenes`` says where pixels are copied.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import psutil

from framering.clock import StreamFrame
from framering.demo_scenes import (
    ClipScene,
    ShowScene,
    VideoWriter,
    have_pyav,
    open_clip,
    open_video_writer,
)
from framering.engine import Engine
from framering.kernels import FrameFormat, convert_to_rgba

STATUS_INTERVAL_S = 0.5
# The contact sheet: this many frames, spread evenly over the run, this wide each.
SHEET_FRAMES, SHEET_COLUMNS, SHEET_THUMB_WIDTH = 12, 4, 480


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
    encoder: str | None
    contact_sheet: Path | None


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


def rgba_of(eng: Engine, pixels: np.ndarray) -> np.ndarray:
    """A delivered frame as a new RGBA picture, whatever the engine's output format."""
    if eng.output is FrameFormat.RGBA:
        return pixels.copy()
    picture = np.empty((eng.height, eng.width, 4), np.uint8)
    convert_to_rgba(pixels, eng.output, picture, matrix="bt709", value_range="limited")
    return picture


def contact_sheet(thumbs: list[np.ndarray], columns: int = SHEET_COLUMNS) -> np.ndarray:
    """RGBA thumbnails in a grid, row by row."""
    h, w = thumbs[0].shape[:2]
    rows = -(-len(thumbs) // columns)
    sheet = np.zeros((rows * h, columns * w, 4), np.uint8)
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = thumb
    return sheet


def write_png(path: Path, rgba: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)):
        raise OSError(f"could not write {path}")


def run_demo(
    *,
    fps: float | None = None,
    seconds: float = 5.0,
    workers: int | None = None,
    slots: int = 8,
    png: Path = Path("framering-demo.png"),
    output: Path | None = None,
    input: Path | None = None,
    contact_sheet_png: Path | None = None,
    use_pyav: bool | None = None,
) -> DemoResult:
    """Run the paced live loop; returns what it measured.

    Without ``input``: the studio show at ``fps`` (default 60) for ``seconds``. With
    ``input``: the clip at its own rate (or ``fps``) until it ends (or ``seconds``). Writing
    ``output`` uses the ``block`` policy (no frame may be missing from a file); a live run
    uses ``drop`` (a late frame is skipped, never queued). ``use_pyav``: None picks PyAV when
    it is installed, False forces OpenCV.
    """
    pyav = have_pyav() if use_pyav is None else use_pyav
    clip = open_clip(input, pyav) if input is not None else None
    width, height = (clip.width, clip.height) if clip is not None else (1920, 1080)
    rate = fps or (clip.fps if clip is not None else 60.0)
    count = round(seconds * rate)
    if clip is not None and clip.frames > 0:
        count = min(count, clip.frames)
    writer: VideoWriter | None = None
    if output is not None:
        even = width % 2 == 0 and height % 2 == 0  # I420 for H.264
        writer = open_video_writer(output, rate, width, height, pyav and even)
    delivery = writer.input if writer is not None else "rgba"
    sheet_at = set(np.linspace(0, max(count - 1, 0), SHEET_FRAMES).round().astype(int).tolist())
    thumbs: list[np.ndarray] = []
    print("starting workers (the first run compiles the kernels) ...", file=sys.stderr, flush=True)
    scene: ShowScene | ClipScene | None = None
    try:
        with Engine(width, height, slots=slots, workers=workers, output=delivery) as eng:
            scene = ShowScene(eng, rate) if clip is None else ClipScene(eng, clip)
            processes: dict[int, psutil.Process] = {}
            latencies: list[float] = []
            delivered = 0
            last: StreamFrame | None = None
            started = time.perf_counter()
            next_status = started + STATUS_INTERVAL_S
            policy = "block" if writer is not None else "drop"
            encoder = writer.name if writer is not None else "none"
            for frame in eng.stream(scene, fps=rate, frames=count, policy=policy):
                latencies.append((frame.finished_ns - frame.submitted_ns) / 1e9)
                if contact_sheet_png is not None and frame.index in sheet_at:
                    thumb_h = round(SHEET_THUMB_WIDTH * height / width)
                    thumb = rgba_of(eng, frame.pixels)
                    thumbs.append(
                        cv2.resize(
                            thumb, (SHEET_THUMB_WIDTH, thumb_h), interpolation=cv2.INTER_AREA
                        )
                    )
                if writer is not None:
                    writer.write(frame)
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
                        f"{m.delivery_jitter_p99 * 1e3:4.1f} ms | damaged "
                        f"{m.damaged_fraction * 100:3.0f}% | encoder {encoder} | workers "
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
            picture = rgba_of(eng, eng.render(scene.layers(last.pts)))
            metrics = eng.metrics()
            scene.close()
            scene = None
    finally:
        if scene is not None:
            scene.close()
        if writer is not None:
            writer.close()
        if clip is not None:
            clip.close()
    write_png(png, picture)
    if contact_sheet_png is not None and thumbs:
        write_png(contact_sheet_png, contact_sheet(thumbs))
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
        encoder=writer.name if writer is not None else None,
        contact_sheet=contact_sheet_png if thumbs else None,
    )
