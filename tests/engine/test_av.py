"""Real encoders: engine frames through PyAV to H.264 and FFV1 and back, and a clip decoded by
PyAV straight into a live source."""

from __future__ import annotations

import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av")

from framering import Engine, InvalidValueError, Layer  # noqa: E402
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


@pytest.mark.parametrize("output", ["i420", "nv12"])
@pytest.mark.parametrize("as_slot", [True, False], ids=["slot", "array"])
def test_a_420_frame_whose_height_is_not_a_multiple_of_4_encodes_its_own_pixels(
    tmp_path: Path, output: str, as_slot: bool
) -> None:
    """PyAV reads a 4:2:0 buffer's height back from its rows (rows // 6 * 4): 64x50 came out
    48 rows tall with its chroma shifted (fixed by copying such frames once)."""
    w, h = 64, 50
    picture = np.random.default_rng(7).integers(0, 256, (h, w, 4), np.uint8)
    picture[..., 3] = 255
    path = tmp_path / "odd.mkv"
    with Engine(w, h, slots=2, workers=1, output=output) as eng:
        still = eng.upload(picture)
        with Encoder(path, w, h, FPS, "ffv1", input=output, pixel_format="yuv420p") as encoder:
            slot = eng.acquire(timeout=10)
            slot.submit([Layer(still)])
            sent = slot.wait(timeout=10).copy()
            if as_slot:
                encoder.write(slot)
                assert slot.released
            else:
                encoder.write(sent)
                slot.release()
        assert eng.metrics().ring_in_use == 0
    if output == "nv12":  # the same samples, chroma interleaved: as planar I420
        y, uv = sent[:h], sent[h:].reshape(h // 2, w // 2, 2)
        sent = np.concatenate([y.reshape(-1), uv[..., 0].reshape(-1), uv[..., 1].reshape(-1)])
    (decoded,) = decoded_i420(path)
    assert np.array_equal(decoded.reshape(-1), sent.reshape(-1))  # ffv1 is lossless


@pytest.mark.parametrize(("matrix", "value_range"), [("bt709", "limited"), ("bt601", "full")])
def test_the_encoded_stream_is_tagged_with_the_engines_matrix_and_range(
    tmp_path: Path, matrix: str, value_range: str
) -> None:
    """Untagged, a player guesses (FFmpeg: BT.601 limited), and pure red decoded as 232, 0, 1."""
    picture = np.zeros((H, W, 4), np.uint8)
    picture[..., 0] = picture[..., 3] = 255
    path = tmp_path / "tagged.mkv"
    with (
        Engine(
            W, H, slots=2, workers=1, output="i420", yuv_matrix=matrix, yuv_range=value_range
        ) as eng,
        Encoder(path, W, H, FPS, "ffv1", yuv_matrix=matrix, yuv_range=value_range) as encoder,
    ):
        encoder.write(eng.render([Layer(eng.upload(picture))]))
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        assert (int(context.colorspace), int(context.color_range)) == (
            {"bt709": 1, "bt601": 6}[matrix],
            {"limited": 1, "full": 2}[value_range],
        )
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(rgb.astype(int) - picture[..., :3]).max() <= 2


def test_the_encoder_refuses_an_unknown_matrix_or_range(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="yuv_matrix"):
        Encoder(tmp_path / "x.mkv", W, H, FPS, "ffv1", yuv_matrix="bt2020")
    with pytest.raises(InvalidValueError, match="yuv_range"):
        Encoder(tmp_path / "x.mkv", W, H, FPS, "ffv1", yuv_range="studio")


def test_a_full_range_clip_is_read_with_full_range(tmp_path: Path) -> None:
    """A JPEG-range (yuvj420p) clip read as limited range had its contrast stretched by up
    to 21 levels."""
    clip = tmp_path / "full.mkv"
    ramp = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    i420 = np.concatenate([ramp.reshape(-1), np.full(W * H // 2, 128, np.uint8)])
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.color_range = 2  # full (JPEG) range
        frame = av.VideoFrame.from_ndarray(i420.reshape(-1, W), format="yuv420p")
        frame.color_range, frame.pts = 2, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    reader = ClipReader(clip)
    assert (reader.yuv_range, reader.yuv_matrix) == ("full", "bt601")  # 180 rows: SD
    with Engine(W, H, slots=2, workers=1) as eng:
        source = eng.live_source(
            W,
            H,
            opaque=True,
            format=reader.format,
            yuv_matrix=reader.yuv_matrix,
            yuv_range=reader.yuv_range,
        )
        with source.write() as pixels:
            assert reader.read_into(pixels)
        out = eng.render([Layer(source)])
    reader.close()
    assert np.abs(out[..., 0].astype(int) - ramp).max() <= 1  # grey: full range Y is R = G = B
