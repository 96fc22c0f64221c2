"""The live demo: the studio-1080p reference scene, animated, composited by the engine.

A paced loop, the way a streaming tool drives a compositor: every tick it writes the next
camera picture into a live source, submits the frame's layer stack, and hands finished frames
on in order (to a PNG at the end, and to an MP4 if asked), printing frame rate, latency, late
frames and each worker's CPU and memory as it goes.
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import psutil

from engine.engine import Engine
from engine.layer import Layer
from engine.slots import FrameSlot
from engine.sources import LiveSource, Source
from kernels.workloads import build

STATUS_INTERVAL_S = 0.5


@dataclass
class DemoResult:
    frames: int
    late: int
    seconds: float
    latency_p50: float
    latency_p99: float
    output: Path


class StudioScene:
    """studio-1080p with motion: the camera drifts, the lower third slides in, the logo pulses."""

    def __init__(self, eng: Engine) -> None:
        workload = build("studio-1080p")
        background, camera, lower_third, logo = workload.layers
        self.eng = eng
        self.background: Source = eng.upload(background.pixels)
        self.lower_third: Source = eng.upload(lower_third.pixels)
        self.logo: Source = eng.upload(logo.pixels)
        self.camera_picture = camera.pixels
        self.camera: LiveSource = eng.live_source(
            camera.pixels.shape[1], camera.pixels.shape[0], opaque=True
        )
        self.home = {"camera": (camera.x, camera.y), "lower": (lower_third.x, lower_third.y)}
        self.logo_at = (logo.x, logo.y)
        self.lower_opacity = lower_third.opacity

    def shoot(self, index: int) -> None:
        """Write the next 'camera' picture in place: the recipe picture with a moving bar."""
        with self.camera.write(timeout=1.0) as pixels:
            pixels[...] = self.camera_picture
            bar = (index * 8) % pixels.shape[1]
            pixels[:, bar : bar + 24, :3] = 255

    def layers(self, t: float) -> list[Layer]:
        cam_x, cam_y = self.home["camera"]
        low_x, low_y = self.home["lower"]
        slide = min(1.0, t / 1.5)  # the lower third slides up over 1.5 s, then stays
        return [
            Layer(self.background),
            Layer(self.camera, x=cam_x + int(60 * math.sin(t * 1.3)), y=cam_y),
            Layer(
                self.lower_third,
                x=low_x,
                y=int(low_y + (1 - slide) * (self.eng.height - low_y)),
                opacity=self.lower_opacity,
            ),
            Layer(
                self.logo,
                x=self.logo_at[0],
                y=self.logo_at[1],
                opacity=0.6 + 0.4 * math.sin(t * 4.0),
            ),
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


def run_demo(
    *,
    fps: float = 60.0,
    seconds: float = 5.0,
    workers: int | None = None,
    slots: int = 8,
    output: Path = Path("framering-demo.png"),
    video: Path | None = None,
) -> DemoResult:
    """Run the paced live loop; returns what it measured."""
    interval = 1.0 / fps
    print("starting workers (the first run compiles the kernels) ...", file=sys.stderr, flush=True)
    with Engine(1920, 1080, slots=slots, workers=workers) as eng:
        scene = StudioScene(eng)
        writer = None
        if video is not None:
            writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1920, 1080))
        processes: dict[int, psutil.Process] = {}
        in_flight: deque[tuple[FrameSlot, float]] = deque()
        depth = max(2, min(slots - 1, 2 * eng.workers))  # frames submitted ahead of display
        late = frames = 0
        start = time.perf_counter()
        next_status = start + STATUS_INTERVAL_S
        index = 0
        latencies: list[float] = []

        def deliver(slot: FrameSlot, due: float) -> None:
            """Hand one finished frame on (in order), then give its slot back."""
            nonlocal late, frames
            frame = slot.wait(timeout=5.0)
            latencies.append((slot.finished_ns - slot.submitted_ns) / 1e9)
            if time.perf_counter() > due:
                late += 1
            if writer is not None:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGBA2BGR))
            frames += 1
            slot.release()

        while True:
            tick = start + index * interval
            if tick - start >= seconds:
                break
            now = time.perf_counter()
            if tick > now:
                time.sleep(tick - now)
            scene.shoot(index)
            slot = eng.acquire(timeout=5.0)
            slot.submit(scene.layers(index * interval))
            # a frame is due for display `depth` ticks after it was submitted
            in_flight.append((slot, tick + depth * interval))
            while len(in_flight) > depth or (in_flight and in_flight[0][0].done):
                deliver(*in_flight.popleft())
            index += 1
            if time.perf_counter() >= next_status:
                next_status += STATUS_INTERVAL_S
                m = eng.metrics()
                print(
                    f"\r{frames / (time.perf_counter() - start):6.1f} fps | latency p50 "
                    f"{m.latency_p50 * 1e3:5.2f} ms p99 {m.latency_p99 * 1e3:5.2f} ms | late "
                    f"{late} | workers {_worker_status(eng, processes)}   ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        while in_flight:
            deliver(*in_flight.popleft())
        elapsed = time.perf_counter() - start
        # the last tick once more, as a copy that outlives the engine, for the PNG
        last_frame = eng.render(scene.layers((index - 1) * interval))
        print(file=sys.stderr)
        if writer is not None:
            writer.release()
    if not cv2.imwrite(str(output), cv2.cvtColor(last_frame, cv2.COLOR_RGBA2BGRA)):
        raise OSError(f"could not write {output}")
    lat = np.array(latencies)
    return DemoResult(
        frames, late, elapsed, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), output
    )
