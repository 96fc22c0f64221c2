"""Damage tracking: every frame is byte-identical to the same stack composited whole, whatever
changed, in whichever order the ring's slots are reused, after crashes, failures and scribbles."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framering import Engine, FrameFailedError, Layer, Transform
from framering.damage import (
    BOUNDING_WASTE,
    MAX_BOXES,
    DamagePlan,
    DamageTracker,
    changed_boxes,
    disjoint_boxes,
)
from framering.protocol import LAYER_RECORD, TRANSFORM_RECORD
from tests import faults
from tests.layers import rgba

W, H = 48, 32  # even: every output format
MODES = ["normal", "multiply", "screen", "source", "add", "difference"]
TRANSFORMS = [
    None,
    Transform(flip="horizontal"),
    Transform(rotate=90),
    Transform(size=(20, 14)),
    Transform(crop=(1, 2, 7, 6)),
]


@dataclass(frozen=True)
class Spec:
    """One layer of the model scene, the same in both engines."""

    picture: str  # "bg", "p0".."p2", "live" or "nested"
    x: int = 0
    y: int = 0
    opacity: float = 1.0
    blend: str = "normal"
    premultiplied: bool = False
    transform: Transform | None = None


class Side:
    """One engine and its sources, built from the same pixels as the other side's."""

    def __init__(self, engine: Engine, pictures: dict[str, np.ndarray]) -> None:
        self.engine = engine
        self.sources = {name: engine.upload(p) for name, p in pictures.items()}
        self.live = engine.live_source(19, 13, buffers=3)
        self.held: list = []

    def publish(self, picture: np.ndarray) -> None:
        with self.live.write() as buffer:
            buffer[...] = picture

    def layers(self, specs: list[Spec]) -> list[Layer]:
        out = []
        for spec in specs:
            if spec.picture == "live":
                source = self.live
            elif spec.picture == "nested":
                source = self.held[-1]
            else:
                source = self.sources[spec.picture]
            out.append(
                Layer(
                    source,
                    x=spec.x,
                    y=spec.y,
                    opacity=spec.opacity,
                    blend=spec.blend,
                    premultiplied=spec.premultiplied,
                    transform=spec.transform,
                )
            )
        return out

    def close(self) -> None:
        for slot in self.held:
            slot.release()
        self.held.clear()
        self.engine.free(self.live)
        for source in self.sources.values():
            self.engine.free(source)


def a_spec(rng: np.random.Generator) -> Spec:
    return Spec(
        picture=str(rng.choice(["p0", "p1", "p2", "live", "bg"])),
        x=int(rng.integers(-15, W + 2)),
        y=int(rng.integers(-15, H + 2)),
        opacity=float(rng.choice([1.0, 0.5, 0.0, rng.random()])),
        blend=str(rng.choice(MODES)),
        premultiplied=bool(rng.random() < 0.2),
        transform=TRANSFORMS[int(rng.integers(len(TRANSFORMS)))],
    )


def change(rng: np.random.Generator, specs: list[Spec], step: str) -> list[Spec]:
    """The scene after one random change of kind ``step``."""
    specs = list(specs)
    i = int(rng.integers(len(specs))) if specs else 0
    if step == "move" and specs:
        specs[i] = replace(
            specs[i], x=specs[i].x + int(rng.integers(-9, 10)), y=int(rng.integers(-9, H))
        )
    elif step == "opacity" and specs:
        specs[i] = replace(specs[i], opacity=float(rng.choice([0.0, 1.0, rng.random()])))
    elif step == "blend" and specs:
        specs[i] = replace(specs[i], blend=str(rng.choice(MODES)))
    elif step == "reorder" and len(specs) > 1:
        j = int(rng.integers(len(specs)))
        specs[i], specs[j] = specs[j], specs[i]
    elif step == "add" and len(specs) < 7:
        specs.insert(int(rng.integers(len(specs) + 1)), a_spec(rng))
    elif step == "remove" and specs:
        del specs[i]
    elif step == "transform" and specs:
        specs[i] = replace(specs[i], transform=TRANSFORMS[int(rng.integers(len(TRANSFORMS)))])
    elif step == "premultiplied" and specs:
        specs[i] = replace(specs[i], premultiplied=not specs[i].premultiplied)
    elif step == "nested":
        specs.append(
            Spec("nested", x=int(rng.integers(-20, 20)), y=int(rng.integers(-20, 20)), opacity=0.7)
        )
    return specs


STEPS = [
    "move",
    "opacity",
    "blend",
    "reorder",
    "add",
    "remove",
    "publish",
    "transform",
    "premultiplied",
    "nested",
    "unchanged",
    "clear=False",
    "keep_rgba",
]


def run_sequence(damaged: Side, whole: Side, seed: int, steps: list[str], rgba_out: bool) -> None:
    """Drive both engines through ``steps`` and compare every frame byte for byte."""
    rng = np.random.default_rng(seed)
    specs = [Spec("bg", opacity=1.0)] + [a_spec(rng) for _ in range(int(rng.integers(1, 4)))]
    for step in steps:
        if step == "publish":
            picture = rgba(rng, 13, 19, "random", False)
            damaged.publish(picture)
            whole.publish(picture)
        if step == "nested" and not damaged.held:
            step = "unchanged"
        specs = change(rng, specs, step)
        if not damaged.held:
            specs = [s for s in specs if s.picture != "nested"]
        clear = step != "clear=False"
        keep_rgba = rgba_out or step != "keep_rgba"  # RGBA kept unless the step says not
        frames = []
        for side in (damaged, whole):
            slot = side.engine.acquire(timeout=10)
            try:
                slot.submit(side.layers(specs), clear=clear, keep_rgba=keep_rgba)
                frames.append((slot, slot.wait(timeout=10)))
            except BaseException:
                slot.release()
                for held, _ in frames:
                    held.release()
                raise
        np.testing.assert_array_equal(frames[0][1], frames[1][1], err_msg=f"after {step}")
        # keep up to two frames (nested layers read the latest), release in random order
        for side, (slot, _) in zip((damaged, whole), frames, strict=True):
            side.held.append(slot)
        if not keep_rgba:  # delivered only: it cannot be read as a layer
            for side in (damaged, whole):
                side.held.pop().release()
            specs = [s for s in specs if s.picture != "nested"]
        while len(damaged.held) > 2 or (damaged.held and rng.random() < 0.3):
            k = int(rng.integers(len(damaged.held)))
            if specs and any(s.picture == "nested" for s in specs) and k == len(damaged.held) - 1:
                specs = [s for s in specs if s.picture != "nested"]
            for side in (damaged, whole):
                side.held.pop(k).release()


def pictures(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "bg": rgba(rng, H, W, "opaque", False),
        "p0": rgba(rng, 12, 17, "random", False),
        "p1": rgba(rng, 21, 9, "binary", False),
        "p2": rgba(rng, 11, 30, "random", True),
    }


@pytest.mark.parametrize("output", ["rgba", "bgr", "i420", "nv12"])
def test_every_frame_is_byte_identical_to_the_stack_composited_whole(output: str) -> None:
    with (
        Engine(W, H, slots=4, workers=1, output=output) as eng,
        Engine(W, H, slots=4, workers=1, output=output, damage=False) as plain,
    ):
        assert eng.damage and not plain.damage
        damaged, whole = Side(eng, pictures(1)), Side(plain, pictures(1))

        @settings(
            max_examples=30 if output == "rgba" else 12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(st.integers(0, 2**32 - 1), st.lists(st.sampled_from(STEPS), min_size=1, max_size=14))
        def sequences(seed: int, steps: list[str]) -> None:
            try:
                run_sequence(damaged, whole, seed, steps, output == "rgba")
            finally:
                for side in (damaged, whole):
                    while side.held:
                        side.held.pop().release()

        sequences()
        assert eng.metrics().frames_completed == plain.metrics().frames_completed
        damaged.close()
        whole.close()


def studio(eng: Engine) -> tuple[list[Layer], object]:
    rng = np.random.default_rng(3)
    background = eng.upload(rgba(rng, H, W, "opaque", False))
    logo = eng.upload(rgba(rng, 8, 10, "random", False))
    camera = eng.live_source(20, 12, buffers=3)
    with camera.write() as buffer:
        buffer[...] = rgba(rng, 12, 20, "opaque", False)
    return [Layer(background), Layer(camera, x=4, y=6), Layer(logo, x=30, y=2, opacity=0.8)], camera


def test_a_still_scene_recomposites_nothing_and_a_moved_logo_only_its_boxes() -> None:
    with Engine(W, H, slots=2, workers=1) as eng:
        layers, _ = studio(eng)
        first = eng.render(layers)  # a slot never used: whole
        for _ in range(4):  # the same slot again (a stream gets its newest free slot): nothing
            np.testing.assert_array_equal(eng.render(layers), first)
        assert eng.metrics().damaged_fraction == pytest.approx(1 / 5)
        with eng.acquire():  # holds that slot: the next frame goes to the other, never used
            np.testing.assert_array_equal(eng.render(layers), first)
        moved = [*layers[:2], replace(layers[2], x=31)]
        eng.render(moved)
        eng.render(moved)
        fraction = eng.metrics().damaged_fraction
        # 2 whole-frame renders, 5 still ones (0) and the logo's two boxes (11x8) once
        assert fraction == pytest.approx((2 * W * H + 11 * 8) / (8 * W * H))


def test_a_still_frame_is_done_in_submit_without_a_worker_or_a_message() -> None:
    with Engine(W, H, slots=1, workers=1) as eng:
        layers, _ = studio(eng)
        first = eng.render(layers)
        before = eng.metrics()
        for _ in range(5):
            with eng.acquire() as slot:
                slot.submit(layers)
                assert slot.done  # already: the slot holds this very picture
                np.testing.assert_array_equal(slot.wait(0), first)
        after = eng.metrics()
        assert after.frames_completed == before.frames_completed + 5
        assert after.ipc_bytes_sent == before.ipc_bytes_sent  # nothing crossed a pipe
        assert after.workers[0].frames_done == before.workers[0].frames_done


def test_a_failed_frame_leaves_its_slot_fully_damaged(tmp_path: Path) -> None:
    with Engine(
        W,
        H,
        slots=1,
        workers=1,
        initializer=faults.install,
        initargs=("scribble", str(tmp_path), "marked"),
    ) as eng:
        layers, _ = studio(eng)
        good = eng.render(layers)
        marked = [*layers, Layer(layers[2].source, x=0, y=0, opacity=faults.MARK)]
        with pytest.raises(FrameFailedError):
            eng.render(marked)  # scribbles over the whole slot, then raises
        # anything may be in the failed frame's slot: the next one is composited whole
        np.testing.assert_array_equal(eng.render(layers), good)
        assert eng.metrics().frames_failed == 1


def test_a_frame_killed_mid_frame_is_retried_exactly_and_its_slot_is_then_whole(
    tmp_path: Path,
) -> None:
    with (
        Engine(
            W,
            H,
            slots=1,
            workers=1,
            initializer=faults.install,
            initargs=("scribble-sigkill", str(tmp_path), "marked-once"),
        ) as eng,
        Engine(W, H, slots=1, workers=1, damage=False) as plain,
    ):
        layers, _ = studio(eng)
        plain_layers, _ = studio(plain)
        eng.render(layers)
        plain.render(plain_layers)

        def moved(stack: list[Layer]) -> list[Layer]:
            mark = Layer(stack[2].source, x=5, y=5, opacity=faults.MARK)
            return [stack[0], replace(stack[1], x=9), stack[2], mark]

        # the worker writes garbage into the frame's boxes and dies; the retry repairs them
        np.testing.assert_array_equal(eng.render(moved(layers)), plain.render(moved(plain_layers)))
        assert eng.metrics().retries == 1
        np.testing.assert_array_equal(eng.render(moved(layers)), plain.render(moved(plain_layers)))


def test_a_slot_is_whole_after_a_retry_a_failure_a_writable_view_or_clear_false() -> None:
    tracker = DamageTracker(1, W, H, even=False, enabled=True)
    records = np.zeros(2, LAYER_RECORD)
    records["x"] = [0, 5]
    sizes = np.array([[W, H], [4, 4]])
    no_transforms = np.zeros(0, TRANSFORM_RECORD)

    def plan(clear: bool = True, write_frame: bool = True) -> DamagePlan:
        return tracker.plan(0, records, no_transforms, sizes, clear=clear, write_frame=write_frame)

    def whole(p: DamagePlan) -> bool:
        return p.boxes.tolist() == [[0, 0, W, H]]

    first = plan()
    assert whole(first)  # never used
    tracker.finished(0, first, ok=True, attempts=1)
    again = plan()
    assert len(again.boxes) == 0  # nothing changed
    tracker.finished(0, again, ok=True, attempts=2)  # retried
    after_retry = plan()
    assert whole(after_retry)
    tracker.finished(0, after_retry, ok=False, attempts=1)  # failed
    after_failure = plan()
    assert whole(after_failure)
    tracker.finished(0, after_failure, ok=True, attempts=1)
    tracker.forget(0)  # handed writable
    assert whole(plan())
    tracker.finished(0, plan(clear=False), ok=True, attempts=1)  # composited over itself
    assert whole(plan())
    tracker.finished(0, plan(write_frame=False), ok=True, attempts=1)  # delivery only
    assert len(plan(write_frame=False).boxes) == 0  # the delivery is current
    tracker.finished(0, plan(write_frame=False), ok=True, attempts=1)
    assert whole(plan(write_frame=True))  # the RGBA area is not


def test_wait_gives_a_read_only_view_and_a_scribbled_writable_one_is_repaired() -> None:
    with Engine(W, H, slots=1, workers=1) as eng:
        layers, _ = studio(eng)
        with eng.acquire() as slot:
            slot.submit(layers)
            frame = slot.wait(timeout=10)
            with pytest.raises(ValueError, match="read-only"):
                frame[0, 0] = 0
            good = frame.copy()
            writable = slot.wait(timeout=10, writable=True)
            writable[...] = 123  # the caller draws over the whole frame
        np.testing.assert_array_equal(eng.render(layers), good)


def test_a_frame_shown_as_a_layer_and_drawn_on_in_place_is_shown_as_drawn() -> None:
    with Engine(16, 8, slots=2, workers=1) as eng:
        red = np.zeros((8, 16, 4), np.uint8)
        red[..., 0], red[..., 3] = 200, 255
        source = eng.upload(red)
        with eng.acquire() as scene:
            scene.submit([Layer(source)])
            scene.wait(timeout=10)
            with eng.acquire() as program:  # the other slot shows the scene
                program.submit([Layer(scene)])
                program.wait(timeout=10)
            scene.wait(timeout=10, writable=True)[...] = 7  # the caller draws on the scene
            with eng.acquire() as program:  # the same slot, the same layer records
                program.submit([Layer(scene)])
                assert (program.wait(timeout=10) == 7).all()


@pytest.mark.parametrize("transform", [None, Transform(flip="horizontal")])
def test_a_nested_frame_drawn_on_again_through_its_kept_writable_view_is_shown_as_drawn(
    transform: Transform | None,
) -> None:
    """The writable view stays valid until release: drawing on it again after a frame showed
    it must show in the next frame that shows it, with damage on and off alike (the layer's
    records are the same each time; a worker's transform cache kept the first picture)."""
    frames: dict[bool, list[np.ndarray]] = {}
    for damage in (True, False):
        with Engine(16, 8, slots=3, workers=1, damage=damage) as eng:
            red = np.zeros((8, 16, 4), np.uint8)
            red[..., 0], red[..., 3] = 200, 255
            source = eng.upload(red)
            with eng.acquire() as scene:
                scene.submit([Layer(source)])
                drawing = scene.wait(timeout=10, writable=True)
                shown = frames[damage] = []
                for value in (7, 9, 11):
                    drawing[:, :4] = value  # drawn on in place, the view kept
                    with eng.acquire() as program:  # the same slot, the same layer records
                        program.submit([Layer(scene, transform=transform)])
                        shown.append(program.wait(timeout=10).copy())
                del drawing
        for frame, value in zip(shown, (7, 9, 11), strict=True):
            expected = np.full((8, 16, 4), value, np.uint8)
            expected[:, 4:] = (200, 0, 0, 255)
            assert np.array_equal(frame, expected if transform is None else expected[:, ::-1])
    assert all(np.array_equal(a, b) for a, b in zip(frames[True], frames[False], strict=True))


def test_damage_can_be_turned_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMERING_DAMAGE", "full")
    with Engine(W, H, slots=1, workers=1) as eng:
        assert not eng.damage
        layers, _ = studio(eng)
        eng.render(layers)
        eng.render(layers)
        assert eng.metrics().damaged_fraction == 1.0
    with pytest.raises(TypeError, match="damage must be a bool"):
        Engine(W, H, damage="yes")  # type: ignore[arg-type]


def test_a_live_source_publishing_damages_only_its_box() -> None:
    with Engine(W, H, slots=1, workers=1) as eng:
        layers, camera = studio(eng)
        eng.render(layers)
        rng = np.random.default_rng(9)
        with camera.write() as buffer:  # type: ignore[attr-defined]
            buffer[...] = rgba(rng, 12, 20, "opaque", False)
        eng.render(layers)
        assert eng.metrics().damaged_fraction == pytest.approx((W * H + 20 * 12) / (2 * W * H))


# ---------------------------------------------------------------- the planner alone
def test_the_union_of_changed_boxes_is_disjoint_and_covers_them_exactly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        corners = rng.integers(0, 60, (int(rng.integers(1, 9)), 2, 2))
        boxes = np.sort(corners, axis=1).reshape(-1, 4)  # x0, y0, x1, y1 (some empty)
        even = bool(rng.random() < 0.5)
        out = disjoint_boxes(boxes, 60, 60, even)
        want = np.zeros((60, 60), int)
        for x0, y0, x1, y1 in boxes.tolist():
            if x0 == x1 or y0 == y1:
                continue  # an empty box damages nothing, even rounded out
            if even:
                x0, y0, x1, y1 = x0 & ~1, y0 & ~1, (x1 + 1) & ~1, (y1 + 1) & ~1
            want[y0:y1, x0:x1] = 1
        got = np.zeros((60, 60), int)
        for x0, y0, x1, y1 in out.tolist():
            got[y0:y1, x0:x1] += 1
            assert not even or not (x0 % 2 or y0 % 2 or x1 % 2 or y1 % 2)
        assert got.max() <= 1  # disjoint
        assert (got >= want).all()  # covers every changed pixel
        if len(out) > 1:  # not the bounding box of everything: little more than the union
            assert got.sum() <= BOUNDING_WASTE**2 * want.sum()


def test_many_changed_boxes_merge_into_a_bounding_box_that_covers_them_all() -> None:
    rng = np.random.default_rng(5)
    for count in (MAX_BOXES + 1, 40, 200):  # the banded cut, then the raw-count cap
        x0 = rng.integers(0, 90, count)
        y0 = rng.integers(0, 50, count)
        boxes = np.stack(
            [x0, y0, x0 + rng.integers(1, 6, count), y0 + rng.integers(1, 6, count)], 1
        )
        out = disjoint_boxes(boxes, 100, 60, even=True)
        covered = np.zeros((60, 100), bool)
        for bx0, by0, bx1, by1 in out.tolist():
            covered[by0:by1, bx0:bx1] = True
        for bx0, by0, bx1, by1 in boxes.tolist():
            assert covered[by0:by1, bx0:bx1].all()
        assert len(out) <= MAX_BOXES and not (out % 2).any()


def test_a_crowd_of_moving_sprites_is_byte_identical_to_the_stack_composited_whole() -> None:
    """Sixty sprites, some moving every frame: more boxes than the planner keeps apart."""
    rng = np.random.default_rng(8)
    with (
        Engine(W, H, slots=3, workers=1, output="nv12") as eng,
        Engine(W, H, slots=3, workers=1, output="nv12", damage=False) as plain,
    ):
        sides = []
        for engine in (eng, plain):
            background = engine.upload(rgba(np.random.default_rng(1), H, W, "opaque", False))
            sprite = engine.upload(rgba(np.random.default_rng(2), 5, 7, "random", False))
            sides.append((engine, background, sprite))
        xs, ys = rng.integers(-6, W, 60), rng.integers(-4, H, 60)
        for frame in range(12):
            moving = rng.random(60) < (0.05 if frame % 3 else 0.6)
            xs = np.where(moving, rng.integers(-6, W, 60), xs)
            ys = np.where(moving, rng.integers(-4, H, 60), ys)
            pictures = []
            for engine, background, sprite in sides:
                layers = [Layer(background)] + [
                    Layer(sprite, x=int(x), y=int(y), opacity=0.8)
                    for x, y in zip(xs, ys, strict=True)
                ]
                pictures.append(engine.render(layers))
            np.testing.assert_array_equal(pictures[0], pictures[1], err_msg=f"frame {frame}")


def test_layers_added_below_are_matched_from_the_top() -> None:
    from framering.damage import SlotPicture

    def picture(keys: list[int], boxes: list[tuple[int, int, int, int]]) -> SlotPicture:
        return SlotPicture([bytes([k]) * 8 for k in keys], boxes, True, b"")

    old = picture([1, 2, 3], [(0, 0, 10, 10), (2, 2, 4, 4), (5, 5, 6, 6)])
    new = picture([1, 9, 2, 3], [(0, 0, 10, 10), (7, 7, 8, 8), (2, 2, 4, 4), (5, 5, 6, 6)])
    assert changed_boxes(old, new) == [(7, 7, 8, 8)]  # only the inserted layer
    assert changed_boxes(new, old) == [(7, 7, 8, 8)]  # and when it goes
    assert changed_boxes(old, old) == []
