"""Live sources in the formats cameras and decoders produce, converted in the worker."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from framering import Engine, InvalidValueError, Layer, SlotStateError, Transform

W, H = 96, 64
# What a producer writes for each format, made by OpenCV from an RGBA picture, and the
# cv2.cvtColor call that turns it back into RGBA (OpenCV's YUV 4:2:0 is BT.601 limited range).
TO_FORMAT = {
    "rgba": None,
    "bgra": cv2.COLOR_RGBA2BGRA,
    "rgb": cv2.COLOR_RGBA2RGB,
    "bgr": cv2.COLOR_RGBA2BGR,
    "i420": cv2.COLOR_RGBA2YUV_I420,
}
TO_RGBA = {
    "bgra": cv2.COLOR_BGRA2RGBA,
    "rgb": cv2.COLOR_RGB2RGBA,
    "bgr": cv2.COLOR_BGR2RGBA,
    "i420": cv2.COLOR_YUV2RGBA_I420,
    "nv12": cv2.COLOR_YUV2RGBA_NV12,
}


@pytest.fixture(scope="module")
def eng() -> Iterator[Engine]:
    with Engine(W, H, slots=4, workers=2) as engine:
        yield engine


def camera_picture(fmt: str, seed: int = 0) -> np.ndarray:
    """A smooth-ish RGBA picture (as a camera sees) in ``fmt``."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (H // 8, W // 8, 4), dtype=np.uint8)
    rgba = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    rgba[..., 3] = 255
    if fmt == "rgba":
        return rgba
    if fmt == "nv12":
        i420 = cv2.cvtColor(rgba, cv2.COLOR_RGBA2YUV_I420)
        nv12 = i420.copy()
        chroma = W * H // 4
        planes = i420[H:].reshape(-1)
        nv12[H:].reshape(-1)[0::2] = planes[:chroma]
        nv12[H:].reshape(-1)[1::2] = planes[chroma:]
        return nv12
    return cv2.cvtColor(rgba, TO_FORMAT[fmt])


@pytest.mark.parametrize("fmt", ["rgba", "bgra", "rgb", "bgr", "i420", "nv12"])
def test_a_live_source_in_any_camera_format_shows_what_cv2_converts_it_to(
    eng: Engine, fmt: str
) -> None:
    picture = camera_picture(fmt)
    want = picture if fmt == "rgba" else cv2.cvtColor(picture, TO_RGBA[fmt])
    camera = eng.live_source(W, H, format=fmt, yuv_matrix="bt601")
    try:
        with camera.write() as buffer:
            assert buffer.shape == picture.shape
            buffer[...] = picture
        frame = eng.render([Layer(camera)])
        assert np.abs(frame.astype(int) - want).max() <= 1
        assert camera.opaque or fmt in ("rgba", "bgra")
    finally:
        eng.free(camera)


def test_a_converted_picture_follows_every_publish_and_can_be_transformed(eng: Engine) -> None:
    camera = eng.live_source(W, H, format="nv12", yuv_matrix="bt601", buffers=2)
    half = Transform(size=(W // 2, H // 2), interpolation="area")
    try:
        for seed in range(4):
            picture = camera_picture("nv12", seed)
            with camera.write() as buffer:
                buffer[...] = picture
            want = cv2.cvtColor(picture, cv2.COLOR_YUV2RGBA_NV12)
            frame = eng.render([Layer(camera), Layer(camera, x=W // 2, transform=half)])
            assert np.abs(frame[:, : W // 2].astype(int) - want[:, : W // 2]).max() <= 1
            small = cv2.resize(want, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
            assert np.abs(frame[: H // 2, W // 2 :].astype(int) - small).max() <= 1
    finally:
        eng.free(camera)


def test_yuv_live_sources_read_their_matrix_and_range(eng: Engine) -> None:
    grey = np.full((H * 3 // 2, W), 128, np.uint8)
    grey[:H] = 235  # limited-range white luma; in full range it is a light grey
    shown = {}
    for value_range in ("limited", "full"):
        camera = eng.live_source(W, H, format="i420", yuv_range=value_range)
        with camera.write() as buffer:
            buffer[...] = grey
        shown[value_range] = eng.render([Layer(camera)])[0, 0, :3]
        eng.free(camera)
    assert (shown["limited"] == 255).all()
    assert (shown["full"] == 235).all()


def test_bad_live_source_formats_are_refused(eng: Engine) -> None:
    with pytest.raises(InvalidValueError, match="format"):
        eng.live_source(W, H, format="yuyv")
    with pytest.raises(InvalidValueError, match="even"):
        eng.live_source(W + 1, H, format="nv12")
    with pytest.raises(InvalidValueError):
        eng.live_source(W, H, format="i420", yuv_matrix="bt2020")


@pytest.mark.parametrize("fmt", ["rgb", "bgr", "i420", "nv12"])
def test_a_live_source_without_alpha_starts_opaque_black(eng: Engine, fmt: str) -> None:
    camera = eng.live_source(W, H, format=fmt, yuv_range="full" if fmt == "nv12" else "limited")
    try:
        frame = eng.render([Layer(camera)])
        assert (frame[..., :3] == 0).all() and (frame[..., 3] == 255).all()
    finally:
        eng.free(camera)


def test_a_yuv_engine_keeps_a_frames_rgba_only_when_asked() -> None:
    background = camera_picture("rgba", 3)
    with Engine(W, H, slots=4, workers=1, output="i420", yuv_matrix="bt601") as yuv:
        source = yuv.upload(background)
        with yuv.acquire() as plain, yuv.acquire() as kept, yuv.acquire() as outer:
            plain.submit([Layer(source)])
            kept.submit([Layer(source)], keep_rgba=True)
            assert np.array_equal(plain.wait(), kept.wait())  # the same delivery
            with pytest.raises(SlotStateError, match="keep_rgba=True"):
                outer.submit([Layer(plain)])
            outer.submit([Layer(kept)])  # its RGBA picture is there to read
            assert np.array_equal(outer.wait(), plain.wait())
        with pytest.raises(SlotStateError, match="keep_rgba=True"), yuv.acquire() as done:
            done.submit([Layer(source)])
            done.wait()
            yuv.transform(done, size=(8, 8))
