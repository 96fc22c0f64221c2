"""Transforms, nesting and transitions end to end: real workers, real shared memory."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from framering import (
    Engine,
    ForeignObjectError,
    InvalidTypeError,
    InvalidValueError,
    Layer,
    SlotState,
    SlotStateError,
    Source,
    Transform,
    crossfade,
    wipe,
)
from framering.kernels.transform import TransformBuffers, apply_transform
from framering.shm import AttachedSegment
from framering.sources import buffer_views

W, H = 160, 90


@pytest.fixture(scope="module")
def eng() -> Iterator[Engine]:
    with Engine(W, H, slots=6, workers=2) as engine:
        yield engine


def picture(seed: int, w: int, h: int, opaque: bool = False) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    if opaque:
        pixels[..., 3] = 255
    return pixels


def transformed(pixels: np.ndarray, t: Transform) -> np.ndarray:
    return apply_transform(pixels, t, TransformBuffers(t, pixels.shape[1], pixels.shape[0]))


TRANSFORMS = [
    Transform(size=(40, 30), interpolation="nearest"),
    Transform(size=(200, 120), interpolation="bicubic"),
    Transform(crop=(10, 5, 50, 40), flip="vertical"),
    Transform(rotate=90, size=(30, 60), interpolation="area"),
    Transform(angle=33.0, center=(20.0, 10.0)),
]


@pytest.mark.parametrize("t", TRANSFORMS, ids=lambda t: ",".join(t.steps()) or "crop")
def test_a_transformed_layer_shows_what_opencv_makes_of_its_source(
    eng: Engine, t: Transform
) -> None:
    pixels = picture(1, 80, 60)
    source = eng.upload(pixels)
    direct = eng.upload(np.ascontiguousarray(transformed(pixels, t)))
    background = eng.upload(picture(2, W, H, opaque=True))
    try:
        got = eng.render([Layer(background), Layer(source, x=-7, y=9, transform=t, opacity=0.8)])
        want = eng.render([Layer(background), Layer(direct, x=-7, y=9, opacity=0.8)])
        assert np.array_equal(got, want)
    finally:
        for s in (source, direct, background):
            eng.free(s)


def test_transformed_frames_match_cv2_called_directly() -> None:
    pixels = picture(3, 96, 64, opaque=True)
    t = Transform(size=(48, 32), interpolation="area", flip="horizontal")
    with Engine(48, 32, slots=2, workers=1) as eng:
        source = eng.upload(pixels)
        frame = eng.render([Layer(source, transform=t)])
    want = cv2.resize(cv2.flip(pixels, 1), (48, 32), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.astype(int) - want).max() <= 1


def overwrite_behind_the_engines_back(source: Source, value: int) -> None:
    segment = AttachedSegment.attach(source.segment_name)
    (view,) = buffer_views(segment.buf, source.width, source.height, 1)
    view[...] = value
    del view
    segment.close()


def test_a_static_transformed_layer_is_transformed_once_and_reused() -> None:
    # One worker, so every frame meets the same cache. The uploaded pixels are changed behind
    # the engine's back (an upload never changes): a cached result keeps showing the old
    # picture, which proves the transform did not run again.
    t = Transform(size=(32, 24), interpolation="area")
    with Engine(64, 48, slots=2, workers=1) as eng:
        source = eng.upload(np.full((48, 64, 4), 100, np.uint8), opaque=True)
        first = eng.render([Layer(source, transform=t)])
        overwrite_behind_the_engines_back(source, 200)
        again = eng.render([Layer(source, transform=t)])
        plain = eng.render([Layer(source)])
        other = eng.render([Layer(source, transform=Transform(size=(31, 24)))])
    assert (first[:24, :32, :3] == 100).all()
    assert np.array_equal(again, first)  # cached: the same result
    assert (plain[..., :3] == 200).all()  # the source itself did change
    assert (other[:24, :31, :3] == 200).all()  # another transform is another entry


def test_a_live_source_is_transformed_again_when_it_publishes() -> None:
    t = Transform(flip="horizontal", size=(20, 10))
    with Engine(40, 20, slots=2, workers=1) as eng:
        camera = eng.live_source(40, 20, opaque=True)
        frames = []
        for value in (50, 90, 130):
            with camera.write() as pixels:
                pixels[...] = value
                pixels[:, :20, 0] = 255  # left half red: flipped, it lands on the right
            frames.append(eng.render([Layer(camera, transform=t)]))
    for value, frame in zip((50, 90, 130), frames, strict=True):
        assert (frame[:10, :10, 0] == value).all()
        assert (frame[:10, 10:20, 0] == 255).all()


def test_a_crop_outside_the_source_is_refused_in_the_caller(eng: Engine) -> None:
    source = eng.upload(picture(4, 20, 20))
    try:
        with eng.acquire() as slot:
            with pytest.raises(InvalidValueError, match="does not lie inside"):
                slot.submit([Layer(source, transform=Transform(crop=(10, 10, 20, 5)))])
            with pytest.raises(InvalidTypeError):
                slot.submit([Layer(source, transform="flip")])  # type: ignore[arg-type]
            assert slot.state is SlotState.ACQUIRED  # nothing was sent
    finally:
        eng.free(source)


def test_engine_transform_makes_a_new_source_in_shared_memory(eng: Engine) -> None:
    pixels = picture(5, 64, 48, opaque=True)
    source = eng.upload(pixels)
    small = eng.transform(source, size=(32, 24), interpolation="area")
    turned = eng.transform(source, Transform(rotate=270))
    try:
        assert (small.width, small.height) == (32, 24) and small.opaque
        assert np.array_equal(
            small.pixels, cv2.resize(pixels, (32, 24), interpolation=cv2.INTER_AREA)
        )
        assert np.array_equal(turned.pixels, cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE))
        assert small.segment_name.startswith("framering")
        frame = eng.render([Layer(small, x=3, y=4)])
        assert np.array_equal(frame[4:28, 3:35], small.pixels)
        with pytest.raises(InvalidValueError):
            eng.transform(source, crop=(0, 0, 65, 1))
        with pytest.raises(InvalidTypeError):
            eng.transform(source, Transform(), size=(3, 3))
    finally:
        for s in (source, small, turned):
            eng.free(s)


def test_engine_transform_of_a_live_source_takes_its_latest_picture(eng: Engine) -> None:
    camera = eng.live_source(30, 20)
    with camera.write() as pixels:
        pixels[...] = 77
    copy = eng.transform(camera, flip="both")
    try:
        assert (copy.pixels == 77).all() and not copy.opaque
    finally:
        eng.free(copy)
        eng.free(camera)


def test_a_finished_frame_is_a_layer_of_another_frame(eng: Engine) -> None:
    a = eng.upload(picture(6, W, H, opaque=True))
    logo = eng.upload(picture(7, 30, 20))
    try:
        with eng.acquire() as inner:
            inner.submit([Layer(a), Layer(logo, x=100, y=50)])
            scene = inner.wait().copy()
            pip = Transform(size=(W // 2, H // 2), interpolation="area")
            with eng.acquire() as outer:
                outer.submit([Layer(a), Layer(inner, x=W // 2, y=0, transform=pip)])
                frame = outer.wait()
                want = cv2.resize(scene, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
                assert np.array_equal(frame[: H // 2, W // 2 :], want)
                assert np.array_equal(frame[H // 2 :], eng.render([Layer(a)])[H // 2 :])
    finally:
        eng.free(a)
        eng.free(logo)


def test_a_frame_read_as_a_layer_stays_pinned_until_its_reader_is_done() -> None:
    with Engine(W, H, slots=4, workers=1) as eng:
        a = eng.upload(picture(8, W, H, opaque=True))
        inner = eng.acquire()
        inner.submit([Layer(a)])
        scene = inner.wait().copy()
        (worker,) = eng.worker_pids()
        os.kill(worker, signal.SIGSTOP)  # the readers stay in flight until SIGCONT
        try:
            readers = [eng.acquire() for _ in range(3)]
            for reader in readers:
                reader.submit([Layer(inner)])
            inner.release()  # deferred: three frames still read it
            assert eng.metrics().ring_in_use == 4  # the inner frame and its three readers
            assert eng.try_acquire() is None  # and nobody can acquire it meanwhile
        finally:
            os.kill(worker, signal.SIGCONT)
        for reader in readers:
            assert np.array_equal(reader.wait(timeout=10), scene)
            reader.release()  # takes the engine's lock: the frames' ends are all recorded
        assert eng.metrics().ring_in_use == 0  # the last reader freed it


def test_only_finished_frames_of_this_engine_can_be_layers(eng: Engine) -> None:
    a = eng.upload(picture(9, W, H))
    try:
        with eng.acquire() as unsent, eng.acquire() as slot:
            with pytest.raises(SlotStateError, match="not a finished frame"):
                slot.submit([Layer(unsent)])  # not submitted
            unsent.submit([Layer(a)])
            unsent.wait()
            slot.submit([Layer(unsent)])  # finished: fine
            slot.wait()
        with Engine(W, H, slots=2, workers=1) as second, second.acquire() as foreign:
            foreign.submit([])
            foreign.wait()
            with eng.acquire() as slot, pytest.raises(ForeignObjectError):
                slot.submit([Layer(foreign)])
        released = eng.acquire()
        released.submit([Layer(a)])
        released.wait()
        released.release()
        with eng.acquire() as slot, pytest.raises(SlotStateError):
            slot.submit([Layer(released)])
    finally:
        eng.free(a)


def test_crossfade_mixes_two_opaque_scenes_by_progress(eng: Engine) -> None:
    a_pixels, b_pixels = picture(10, W, H, opaque=True), picture(11, W, H, opaque=True)
    a, b = eng.upload(a_pixels), eng.upload(b_pixels)
    try:
        for p in (0.0, 0.25, 0.5, 1.0):
            frame = eng.render(crossfade(a, b, p)).astype(float)
            want = (1 - p) * a_pixels + p * b_pixels
            assert np.abs(frame[..., :3] - want[..., :3]).max() <= 1.0
        with pytest.raises(InvalidValueError):
            crossfade(a, b, 1.5)
    finally:
        eng.free(a)
        eng.free(b)


def test_crossfade_at_its_end_keeps_a_under_a_transparent_b(eng: Engine) -> None:
    """At progress 1 the crossfade returned b alone: where b is transparent, a vanished at
    the last step after showing through at 0.999."""
    red = np.zeros((H, W, 4), np.uint8)
    red[..., 0] = red[..., 3] = 255
    holed = np.zeros((H, W, 4), np.uint8)
    holed[: H // 2, ..., 1] = holed[: H // 2, ..., 3] = 255  # its lower half transparent
    a, b = eng.upload(red), eng.upload(holed)
    try:
        near, end = (eng.render(crossfade(a, b, p)) for p in (0.999, 1.0))
    finally:
        eng.free(a)
        eng.free(b)
    assert end[-1, 0].tolist() == near[-1, 0].tolist() == [255, 0, 0, 255]
    assert end[0, 0].tolist() == [0, 255, 0, 255]


@pytest.mark.parametrize("direction", ["right", "left", "down", "up"])
def test_wipe_reveals_the_second_scene_behind_a_moving_edge(eng: Engine, direction: str) -> None:
    a_pixels, b_pixels = picture(12, W, H, opaque=True), picture(13, W, H, opaque=True)
    a, b = eng.upload(a_pixels), eng.upload(b_pixels)
    try:
        frame = eng.render(wipe(a, b, 0.25, direction))  # type: ignore[arg-type]
        shown = np.zeros((H, W), bool)
        if direction == "right":
            shown[:, : W // 4] = True
        elif direction == "left":
            shown[:, W - W // 4 :] = True
        elif direction == "down":
            shown[: round(H / 4)] = True
        else:
            shown[H - round(H / 4) :] = True
        assert np.array_equal(frame[shown], b_pixels[shown])
        assert np.array_equal(frame[~shown], a_pixels[~shown])
        assert np.array_equal(eng.render(wipe(a, b, 0.0)), a_pixels)
        assert np.array_equal(eng.render(wipe(a, b, 1.0)), b_pixels)
    finally:
        eng.free(a)
        eng.free(b)


def test_a_wipe_between_two_rendered_scenes_reads_both_slots(eng: Engine) -> None:
    a_pixels, b_pixels = picture(14, W, H, opaque=True), picture(15, W, H, opaque=True)
    a, b = eng.upload(a_pixels), eng.upload(b_pixels)
    try:
        with eng.acquire() as scene_a, eng.acquire() as scene_b:
            scene_a.submit([Layer(a)])
            scene_b.submit([Layer(b)])
            scene_a.wait()
            scene_b.wait()
            frame = eng.render(wipe(scene_a, scene_b, 0.5))
        assert np.array_equal(frame[:, : W // 2], b_pixels[:, : W // 2])
        assert np.array_equal(frame[:, W // 2 :], a_pixels[:, W // 2 :])
    finally:
        eng.free(a)
        eng.free(b)


def test_a_frame_with_more_transformed_layers_than_the_cache_holds_is_exact() -> None:
    pixels = picture(16, 8, 8, opaque=True)
    with Engine(40, 8, slots=2, workers=1) as eng:
        source = eng.upload(pixels)
        layers = [
            Layer(source, x=i, y=0, transform=Transform(crop=(i % 8, i // 8, 1, 1)))
            for i in range(40)  # 40 one-pixel crops: more entries than the worker's cache
        ]
        frame = eng.render(layers)
    want = np.stack([pixels[i // 8, i % 8] for i in range(40)])
    assert np.array_equal(frame[0], want)


def test_an_animated_transform_keeps_the_worker_within_the_cache_budget() -> None:
    # A zoom makes a new transform every frame; what the cache drops must really be freed
    # (not kept alive by tables of earlier frames). The cache holds 128 MiB, plus 64 MiB of
    # spare buffers; the pictures here grow from 6 to 25 MiB, 60 frames of them ~900 MiB.
    with Engine(64, 64, slots=2, workers=1) as eng:
        source = eng.upload(picture(17, 512, 512))
        eng.render([Layer(source, transform=Transform(size=(1200, 1200)))])
        before = eng.metrics().workers[0].rss_bytes
        for frame in range(60):
            side = 1200 + 22 * frame
            eng.render([Layer(source, transform=Transform(size=(side, side)))])
        grown = eng.metrics().workers[0].rss_bytes - before
    assert grown < 320 * 2**20, f"worker grew by {grown / 2**20:.0f} MiB"


def test_a_stalled_transformed_live_source_shows_its_fallback_where_it_was() -> None:
    with Engine(64, 48, slots=2, workers=1) as eng:
        red = np.zeros((48, 64, 4), np.uint8)
        red[...] = (255, 0, 0, 255)
        background = eng.upload(red)
        slate = eng.upload(np.full((16, 16, 4), 255, np.uint8))  # white, smaller than the cam
        camera = eng.live_source(40, 30, stall_timeout=0.2, fallback=slate)
        with camera.write() as pixels:
            pixels[...] = (0, 0, 255, 255)
        crop = Transform(crop=(20, 10, 20, 20), size=(32, 32))  # does not fit the slate
        turned = Transform(size=(16, 16), angle=45.0)  # fits; corners turn transparent
        layers = [
            Layer(background),
            Layer(camera, x=0, y=0, transform=crop),
            Layer(camera, x=40, y=0, transform=turned),
        ]
        live = eng.render(layers)
        time.sleep(0.3)  # the camera stalls
        stalled = eng.render(layers)
        assert eng.metrics().stalled_frames >= 1
    assert (live[:32, :32, 2] == 255).all()  # the camera, cropped and scaled
    assert (stalled[:32, :32, :3] == 255).all()  # the slate, scaled to where the camera was
    assert (stalled[32:, :, :3] == (255, 0, 0)).all()
    assert (stalled[8, 48, :3] == 255).all()  # the turned slate's centre
    assert (stalled[0, 40, :3] == (255, 0, 0)).all()  # its corner shows the background
