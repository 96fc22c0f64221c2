"""The main job and real video: the live demo, and a clip decoded, composited and encoded."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from framering.demo import Overlays, run_demo
from framering.kernels import PixelLayer, composite_stack


def test_demo_runs_live_and_writes_the_last_frame(tmp_path: Path) -> None:
    png, video = tmp_path / "last.png", tmp_path / "run.mp4"
    result = run_demo(fps=30, seconds=1.0, workers=1, slots=4, png=png, output=video)
    assert result.frames == 30 and result.dropped == 0  # writing a file loses no frame
    assert len(decoded(video)) == 30
    assert 0 < result.latency_p50 <= result.latency_p99
    picture = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (1080, 1920, 4) and (picture[..., 3] == 255).all()
    assert np.ptp(picture[..., :3]) > 0


def write_clip(path: Path, frames: int, width: int, height: int, fps: float) -> None:
    """A synthetic clip: a gradient that moves, and a white square crossing it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened()
    ys, xs = np.mgrid[0:height, 0:width]
    for i in range(frames):
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = (xs * 255 // width + 4 * i) % 256
        frame[..., 1] = ys * 255 // height
        frame[..., 2] = 128
        frame[40:80, 10 + 8 * i : 50 + 8 * i] = 255
        writer.write(frame)
    writer.release()


def decoded(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# The overlays are the reference workload's random-noise pictures, which no lossy codec with
# 4:2:0 chroma keeps (mp4v gives ~28 dB, and ~23 dB for a wrong picture: no margin to judge
# by). So the run is encoded losslessly (FFV1 in .mkv): what remains is the 8-bit RGBA -> BGR
# conversion, and a frame composited wrong (overlays half a second off) scores ~15 dB.
PSNR_THRESHOLD_DB = 50.0


def test_a_real_clip_is_decoded_composited_and_encoded(tmp_path: Path) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    width, height, fps, count = 320, 180, 30.0, 24
    write_clip(clip, count, width, height, fps)
    result = run_demo(input=clip, output=out, png=tmp_path / "last.png", workers=1, slots=4)
    assert result.frames == count and result.dropped == 0  # a file loses no frame

    # the reference: the same decoded input under the same overlays, composited directly
    overlays = Overlays.studio(width, height)
    pictures = {"lower": overlays.lower_third, "logo": overlays.logo}
    inputs, outputs = decoded(clip), decoded(out)
    assert len(inputs) == len(outputs) == count
    for index, (source, encoded) in enumerate(zip(inputs, outputs, strict=True)):
        layers = [PixelLayer(cv2.cvtColor(source, cv2.COLOR_BGR2RGBA))]
        layers += [
            PixelLayer(pictures[which], x=x, y=y, opacity=opacity)
            for which, x, y, opacity in overlays.placements(index / fps)
        ]
        want = np.empty((height, width, 4), np.uint8)
        composite_stack(want, layers)
        quality = psnr(cv2.cvtColor(want, cv2.COLOR_RGBA2BGR), encoded)
        assert quality > PSNR_THRESHOLD_DB, f"frame {index}: PSNR {quality:.1f} dB"
        if index == 0:  # the check can tell a wrong picture: overlays at another time
            wrong = layers[:1] + [
                PixelLayer(pictures[which], x=x, y=y, opacity=opacity)
                for which, x, y, opacity in overlays.placements(0.5)
            ]
            composite_stack(want, wrong)
            assert psnr(cv2.cvtColor(want, cv2.COLOR_RGBA2BGR), encoded) < PSNR_THRESHOLD_DB
