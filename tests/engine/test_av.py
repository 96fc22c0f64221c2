"""Real encoders: engine frames through PyAV to H.264 and FFV1 and back, and a clip decoded by
PyAV straight into a live source."""

from __future__ import annotations

import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av")

from framering import Engine, Layer  # noqa: E402
from framering.av import ClipReader, Encoder  # noqa: E402

W, H, FPS = 320, 180, 30


def smooth(index: int) -> np.ndarray:
    """A picture an encoder can keep: gradients and an anti-aliased disc that moves."""
    ys, xs = np.mgrid[0:H, 0:W]
    picture = np.empty((H, W, 4), np.uint8)
    picture[..., 0] = (xs * 200 // W + index) % 256
    picture[..., 1] = ys * 200 // H
    picture[..., 2] = 90
    picture[..., 3] = 255
    cv2.circle(picture, (40 + 3 * index, H // 2), 30, (250, 240, 30, 255), -1, cv2.LINE_AA)
    return picture


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def decoded_i420(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="yuv420p") for frame in container.decode(video=0)]


def encode_engine_frames(path: Path, codec: str, options: dict[str, str]) -> list[np.ndarray]:
    """60 frames of a moving picture through eng.stream() into ``path``; what was sent."""
    sent = []
    with Engine(W, H, slots=4, workers=1, output="i420") as eng:
        camera = eng.live_source(W, H, opaque=True)

        def scene(t: float, index: int) -> list[Layer]:
            with camera.write() as pixels:
                pixels[...] = smooth(index)
            return [Layer(camera)]

        with Encoder(path, W, H, FPS, codec, options=options) as encoder:
            for frame in eng.stream(scene, fps=FPS, frames=60, policy="block"):
                sent.append(frame.pixels.copy())
                encoder.write(frame)
            assert encoder.frames == 60
    return sent


@pytest.mark.parametrize(
    ("codec", "options", "floor_db"),
    [("h264", {"preset": "veryfast"}, 35.0), ("ffv1", {}, 50.0)],
    ids=["h264", "ffv1 (lossless)"],
)
def test_engine_frames_survive_an_encoder_round_trip(
    tmp_path: Path, codec: str, options: dict[str, str], floor_db: float
) -> None:
    path = tmp_path / ("out.mp4" if codec == "h264" else "out.mkv")
    sent = encode_engine_frames(path, codec, options)
    back = decoded_i420(path)
    assert len(back) == len(sent) == 60
    qualities = [psnr(a, b) for a, b in zip(sent, back, strict=True)]
    assert min(qualities) > floor_db, min(qualities)
    assert psnr(sent[0], back[30]) < floor_db  # a wrong frame scores far lower


def test_libx264_lets_go_of_an_input_frame_before_encode_returns(tmp_path: Path) -> None:
    # what lets framering.av hand stream frames to libx264 without a copy
    with av.open(str(tmp_path / "probe.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for index in range(8):
            view = np.zeros((H * 3 // 2, W), np.uint8).view()
            alive = weakref.ref(view)
            frame = av.VideoFrame.from_numpy_buffer(view, format="yuv420p")
            frame.pts = index
            del view
            packets = stream.encode(frame)
            del frame
            assert alive() is None, "libx264 kept the input frame after encode()"
            for packet in packets:
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_a_slot_handed_to_the_encoder_is_released_once_ffmpeg_lets_go(tmp_path: Path) -> None:
    with Engine(W, H, slots=2, workers=1, output="i420") as eng:
        still = eng.upload(smooth(0))
        with Encoder(tmp_path / "slots.mp4", W, H, FPS) as encoder:
            for _ in range(4):
                slot = eng.acquire(timeout=10)
                slot.submit([Layer(still)])
                slot.wait(timeout=10)
                encoder.write(slot)  # no copy: the encoder owns the slot now
                assert slot.released  # libx264 copied it before encode() returned
        assert eng.metrics().ring_in_use == 0
    assert len(decoded_i420(tmp_path / "slots.mp4")) == 4


def test_a_clip_decoded_by_pyav_round_trips_through_a_live_source(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mkv"
    pictures = []
    with av.open(str(clip), "w") as container:  # lossless, so the decoded clip is known
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for index in range(10):
            i420 = cv2.cvtColor(
                cv2.cvtColor(smooth(index), cv2.COLOR_RGBA2BGR), cv2.COLOR_BGR2YUV_I420
            )
            pictures.append(i420)
            frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    reader = ClipReader(clip)
    assert (reader.width, reader.height, reader.format) == (W, H, "i420")
    with Engine(W, H, slots=2, workers=1, output="i420") as eng:
        source = eng.live_source(W, H, opaque=True, format=reader.format)
        for index in range(10):
            with source.write() as pixels:
                assert reader.read_into(pixels)  # straight into shared memory, as decoded
            out = eng.render([Layer(source)])
            # I420 -> RGBA in the worker, then RGBA -> I420 on delivery: rounding only
            assert psnr(out, pictures[index]) > 45
    assert not reader.read_into(np.empty((H * 3 // 2, W), np.uint8))  # the clip's end
    reader.close()
