"""The main job: the studio show live, recorded with PyAV and with OpenCV, and a user's clip
decoded, composited under the show's overlays and encoded, both ways."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from framering.demo import SHEET_COLUMNS, SHEET_FRAMES, SHEET_THUMB_WIDTH, run_demo
from framering.demo_scenes import Overlays
from framering.kernels import (
    FrameFormat,
    PixelLayer,
    composite_stack,
    convert_frame,
    convert_to_rgba,
)

FPS = 30


def test_the_show_runs_live_and_records_h264_with_pyav(tmp_path: Path) -> None:
    png, video, sheet = tmp_path / "last.png", tmp_path / "show.mp4", tmp_path / "sheet.png"
    result = run_demo(
        fps=FPS, seconds=1.0, workers=1, slots=4, png=png, output=video, contact_sheet_png=sheet
    )
    assert result.frames == FPS and result.dropped == 0  # writing a file loses no frame
    assert result.encoder == "PyAV libx264"
    assert 0 < result.latency_p50 <= result.latency_p99
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    assert len(frames) == FPS and frames[0].shape == (1080, 1920, 3)
    picture = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (1080, 1920, 4) and (picture[..., 3] == 255).all()
    assert np.ptp(picture[..., :3]) > 100  # a scene, not a blank
    grid = cv2.imread(str(sheet))
    thumb_h = round(SHEET_THUMB_WIDTH * 1080 / 1920)
    rows = -(-SHEET_FRAMES // SHEET_COLUMNS)
    assert grid.shape == (rows * thumb_h, SHEET_COLUMNS * SHEET_THUMB_WIDTH, 3)


def test_the_show_records_with_opencv_where_pyav_is_not_used(tmp_path: Path) -> None:
    video = tmp_path / "show.mp4"
    result = run_demo(
        fps=FPS,
        seconds=0.5,
        workers=1,
        slots=4,
        png=tmp_path / "last.png",
        output=video,
        use_pyav=False,
    )
    assert result.encoder == "OpenCV mp4v"
    assert result.frames == FPS // 2 and len(decoded_bgr(video)) == FPS // 2


def write_clip(path: Path, frames: int, width: int, height: int) -> None:
    """A synthetic clip with OpenCV: a gradient that moves, and a white square crossing it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
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


def decoded_bgr(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def decoded_rgba_with_pyav(path: Path) -> list[np.ndarray]:
    """The clip as the engine sees it with PyAV: decoded I420, converted as the workers do,
    with the matrix FFmpeg assumes for an untagged clip of this size (BT.601 below 720 rows:
    OpenCV's writer converted it that way too)."""
    pictures = []
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.colorspace in (2, None)  # untagged
        assert container.streams.video[0].codec_context.height < 720
        for frame in container.decode(video=0):
            i420 = frame.to_ndarray(format="yuv420p")
            rgba = np.empty((frame.height, frame.width, 4), np.uint8)
            convert_to_rgba(i420, FrameFormat.I420, rgba, matrix="bt601", value_range="limited")
            pictures.append(rgba)
    return pictures


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


# The run is encoded losslessly (FFV1 in .mkv), so what remains is the delivery's rounding;
# a frame composited wrong (the lower third of another moment) scores far lower.
PSNR_THRESHOLD_DB = 50.0


@pytest.mark.parametrize("use_pyav", [True, False], ids=["PyAV", "OpenCV"])
def test_a_real_clip_is_decoded_composited_and_encoded(tmp_path: Path, use_pyav: bool) -> None:
    clip, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    width, height, count = 320, 180, 24
    write_clip(clip, count, width, height)
    result = run_demo(
        input=clip, output=out, png=tmp_path / "last.png", workers=1, slots=4, use_pyav=use_pyav
    )
    assert result.frames == count and result.dropped == 0  # a file loses no frame
    assert result.encoder == ("PyAV ffv1" if use_pyav else "OpenCV FFV1")

    overlays = Overlays(width, height)
    pictures = {"lower": overlays.lower_third, "logo": overlays.logo}
    if use_pyav:  # decoded in the clip's own format (I420), converted by the workers
        inputs = decoded_rgba_with_pyav(clip)
        with av.open(str(out)) as container:
            outputs = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    else:
        inputs = [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA) for bgr in decoded_bgr(clip)]
        outputs = decoded_bgr(out)
    assert len(inputs) == len(outputs) == count

    def expected(source: np.ndarray, t: float) -> np.ndarray:
        layers = [PixelLayer(source)] + [
            PixelLayer(pictures[which], x=x, y=y, opacity=opacity)
            for which, x, y, opacity in overlays.placements(t)
        ]
        rgba = np.empty((height, width, 4), np.uint8)
        composite_stack(rgba, layers)
        if not use_pyav:
            return cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR)
        i420 = np.empty(FrameFormat.I420.shape(width, height), np.uint8)
        convert_frame(rgba, i420, FrameFormat.I420)  # what the engine delivered to the encoder
        return i420

    for index, (source, encoded) in enumerate(zip(inputs, outputs, strict=True)):
        quality = psnr(expected(source, index / FPS), encoded)
        assert quality > PSNR_THRESHOLD_DB, f"frame {index}: PSNR {quality:.1f} dB"
    # the check can tell a wrong picture: the lower third as it is three seconds later
    assert psnr(expected(inputs[0], 3.0), outputs[0]) < PSNR_THRESHOLD_DB
