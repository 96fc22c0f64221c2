"""What each delivery format, input format and transform costs per 1080p frame.

Everything runs on the studio-1080p reference workload, through the engine with one worker
(``damage=False``: every frame composited whole), one frame at a time, and is read from the
worker's own clock (``FrameSlot.kernel_ns``: buffer look-ups, transforms, conversions,
compositing; not the pipes). Beside each figure: the same OpenCV call made in the caller's
process, what a user would otherwise do after ``wait()``, with OpenCV's default threads and
with one (a worker runs one thread, one worker per core).
Variants are timed in alternating blocks, and every ratio is taken against a baseline of the
same run (RGBA delivery, the unscaled camera layer, the RGBA camera):

1. **Delivery**: the frame as rgba, bgra, bgr, i420, nv12 (the worker writes only that format),
   and bgr/i420 with ``keep_rgba=True`` (the RGBA frame written too). Target: i420/nv12 at
   most 1.3x rgba.
2. **Transforms**: the camera layer (1280x720 at 96,72) made from a 1920x1080 picture by a
   transform. "static" is an uploaded source (cached after the first frame: target 1.0x the
   unscaled camera); "live" is a live source published every frame (transformed every frame).
3. **Input formats**: the camera as a live source in rgba, bgra, rgb, bgr, i420 or nv12,
   published every frame and converted to RGBA by the worker.
4. **Encoding** (with PyAV installed): libx264's time per 1080p I420 frame of the demo's show
   at the ``ultrafast`` and ``veryfast`` presets, beside the I420 composite's own cost, so a
   live pipeline's time can be read in one table.

    framering bench --formats [--full] [--out DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from framering import Engine, FrameSlot, Layer, LiveSource, Transform, showcase
from framering.kernels import FrameFormat, PixelLayer, composite_stack, convert_frame, warmup
from framering.kernels.reference import transform_reference
from framering.kernels.workloads import build

from .timing import progress, progress_done, report, results_stamp

DEFAULT_RESULTS = Path("benchmarks/results")
CAMERA = 1  # index of the camera layer in studio-1080p
CAMERA_SIZE = (1280, 720)
DELIVERY = ("rgba", "bgra", "bgr", "i420", "nv12")
KEPT = ("bgr", "i420")  # also timed with keep_rgba=True
SATURATED = ("rgba", "i420", "nv12")  # throughput with every worker busy
INPUTS = ("rgba", "bgra", "rgb", "bgr", "i420", "nv12")
# cv2.cvtColor codes a caller would use for the same conversion (None: OpenCV has none)
CV2_DELIVERY = {
    "bgra": cv2.COLOR_RGBA2BGRA,
    "bgr": cv2.COLOR_RGBA2BGR,
    "i420": cv2.COLOR_RGBA2YUV_I420,
    "nv12": None,
}
CV2_INPUT = {
    "bgra": cv2.COLOR_BGRA2RGBA,
    "rgb": cv2.COLOR_RGB2RGBA,
    "bgr": cv2.COLOR_BGR2RGBA,
    "i420": cv2.COLOR_YUV2RGBA_I420,
    "nv12": cv2.COLOR_YUV2RGBA_NV12,
}
TRANSFORMS = {
    "scale nearest": Transform(size=CAMERA_SIZE, interpolation="nearest"),
    "scale bilinear": Transform(size=CAMERA_SIZE, interpolation="bilinear"),
    "scale area": Transform(size=CAMERA_SIZE, interpolation="area"),
    "scale bicubic": Transform(size=CAMERA_SIZE, interpolation="bicubic"),
    "crop": Transform(crop=(320, 180, *CAMERA_SIZE)),
    "flip": Transform(crop=(0, 0, *CAMERA_SIZE), flip="horizontal"),
    "rotate 90 + scale": Transform(rotate=90, size=CAMERA_SIZE),
    "angle 10 + scale": Transform(size=CAMERA_SIZE, angle=10.0),
}


@dataclass
class Results:
    rows: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        section: str,
        variant: str,
        worker: list[float],
        caller: tuple[float, float] | None,
    ) -> None:
        self.rows.append(
            {
                "section": section,
                "variant": variant,
                "worker_ms": statistics.median(worker) * 1e3,
                "worker_p90_ms": float(np.percentile(worker, 90)) * 1e3,
                "frames": len(worker),
                "caller_cv2_ms": None if caller is None else caller[0] * 1e3,
                "caller_cv2_1_thread_ms": None if caller is None else caller[1] * 1e3,
            }
        )

    def get(self, section: str, variant: str) -> float:
        for row in self.rows:
            if row["section"] == section and row["variant"] == variant:
                return float(row["worker_ms"])  # type: ignore[arg-type]
        raise KeyError((section, variant))


def studio_layers(eng: Engine) -> tuple[list[Layer], np.ndarray]:
    """The studio-1080p layers as engine layers, and the camera's pixels."""
    workload = build("studio-1080p")
    layers = []
    for layer in workload.layers:
        layers.append(
            Layer(
                eng.upload(layer.pixels),
                x=layer.x,
                y=layer.y,
                opacity=layer.opacity,  # type: ignore[arg-type]
                blend=layer.blend,
            )
        )
    return layers, workload.layers[CAMERA].pixels


def frame_time(
    eng: Engine,
    layers: list[Layer],
    before: Callable[[], None] | None = None,
    keep_rgba: bool = False,
) -> float:
    """Seconds the worker spent on one frame of ``layers``."""
    if before is not None:
        before()
    with eng.acquire(timeout=10) as slot:
        slot.submit(layers, keep_rgba=keep_rgba)
        slot.wait(timeout=10)
        return slot.kernel_ns / 1e9


# Copies of a caller-side input the baselines rotate through, so that each call reads a picture
# that is not in cache (48 MB of 1080p RGBA against a 32 MB L3 here), like a frame a worker
# just wrote or a camera picture just published: the engine's figures are taken that way too.
CALLER_COPIES = 6


def caller_time(
    call: Callable[[np.ndarray], object], picture: np.ndarray, repetitions: int
) -> tuple[float, float]:
    """Median seconds of ``call(picture)`` in this process: with OpenCV's default threads
    (what a caller gets), then with one thread (what a worker uses, one per core)."""
    copies = [picture.copy() for _ in range(CALLER_COPIES)]
    threads = cv2.getNumThreads()
    medians = []
    try:
        for count in (threads, 1):
            cv2.setNumThreads(count)
            call(copies[0])
            times = []
            for i in range(repetitions):
                started = time.perf_counter()
                call(copies[i % CALLER_COPIES])
                times.append(time.perf_counter() - started)
            medians.append(statistics.median(times))
    finally:
        cv2.setNumThreads(threads)
    return medians[0], medians[1]


def alternate(
    variants: dict[str, Callable[[], float]], blocks: int, per_block: int, label: str
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():  # warm-up: caches, page faults, first transforms
        run()
        run()
    for block in range(blocks):
        for name, run in variants.items():
            samples[name].extend(run() for _ in range(per_block))
        progress(f"{label}: block {block + 1}/{blocks}")
    return samples


def publish(camera: LiveSource, picture: np.ndarray) -> Callable[[], None]:
    def write() -> None:
        with camera.write() as buffer:
            buffer[...] = picture

    return write


def bench_delivery(blocks: int, per_block: int, out: Results) -> None:
    engines = {
        fmt: Engine(1920, 1080, slots=2, workers=1, output=fmt, damage=False) for fmt in DELIVERY
    }
    try:
        layers = {fmt: studio_layers(eng)[0] for fmt, eng in engines.items()}
        variants = {fmt: (lambda f=fmt: frame_time(engines[f], layers[f])) for fmt in DELIVERY}
        for fmt in KEPT:  # the frame's RGBA kept too (to show it as a layer of another frame)
            variants[f"{fmt} + keep_rgba"] = lambda f=fmt: frame_time(
                engines[f], layers[f], keep_rgba=True
            )
        samples = alternate(variants, blocks, per_block, "delivery formats")
        frame = engines["rgba"].render(layers["rgba"])
    finally:
        for eng in engines.values():
            eng.close()
    for fmt in DELIVERY:
        code = CV2_DELIVERY.get(fmt)
        caller = (
            None if code is None else caller_time(lambda p, c=code: cv2.cvtColor(p, c), frame, 30)
        )
        out.add("delivery", fmt, samples[fmt], caller)
    for fmt in KEPT:
        out.add("delivery", f"{fmt} + keep_rgba", samples[f"{fmt} + keep_rgba"], None)
    if CV2_DELIVERY["nv12"] is None:
        out.notes.append("OpenCV has no RGBA to NV12 conversion: no caller figure for nv12")


def saturated_fps(eng: Engine, layers: list[Layer], frames: int) -> float:
    """Frames per second with every slot in flight (the engine's throughput)."""
    inflight: deque[FrameSlot] = deque()
    started = time.perf_counter()
    for _ in range(frames):
        if len(inflight) == eng.slots:
            done = inflight.popleft()
            done.wait(timeout=10)
            done.release()
        slot = eng.acquire(timeout=10)
        slot.submit(layers)
        inflight.append(slot)
    while inflight:
        done = inflight.popleft()
        done.wait(timeout=10)
        done.release()
    return frames / (time.perf_counter() - started)


def bench_saturated(blocks: int, frames: int, out: Results) -> None:
    """Throughput per delivery format with one worker per physical core, every slot busy."""
    engines = {fmt: Engine(1920, 1080, slots=8, output=fmt, damage=False) for fmt in SATURATED}
    try:
        layers = {fmt: studio_layers(eng)[0] for fmt, eng in engines.items()}
        fps: dict[str, list[float]] = {fmt: [] for fmt in SATURATED}
        for block in range(blocks):
            for fmt, eng in engines.items():
                fps[fmt].append(saturated_fps(eng, layers[fmt], frames))
            progress(f"saturated delivery: block {block + 1}/{blocks}")
        workers = engines["rgba"].workers
    finally:
        for eng in engines.values():
            eng.close()
    for fmt in SATURATED:
        # as seconds per frame, so the table's ratio reads like the others
        out.add("saturated", fmt, [1 / f for f in fps[fmt]], None)
    out.notes.append(f"saturated delivery: {workers} workers, 8 slots, 200 frames a block")


def bench_transforms(blocks: int, per_block: int, out: Results) -> None:
    rng = np.random.default_rng(7)
    big = rng.integers(0, 256, (1080, 1920, 4), dtype=np.uint8)
    big[..., 3] = 255
    with Engine(1920, 1080, slots=2, workers=1, damage=False) as eng:
        layers, _ = studio_layers(eng)
        camera = layers[CAMERA]
        static = eng.upload(big)
        live = eng.live_source(1920, 1080, opaque=True)
        write = publish(live, big)
        variants: dict[str, Callable[[], float]] = {
            "unscaled camera": lambda: frame_time(eng, layers),
        }
        for name, transform in TRANSFORMS.items():
            for kind, source in (("static", static), ("live", live)):
                stack = list(layers)
                stack[CAMERA] = Layer(source, x=camera.x, y=camera.y, transform=transform)
                variants[f"{name}, {kind}"] = lambda s=stack, k=kind: frame_time(
                    eng, s, write if k == "live" else None
                )
        samples = alternate(variants, blocks, per_block, "transforms")
        check = eng.render([Layer(static, transform=TRANSFORMS["scale area"])])
        want = cv2.resize(big, CAMERA_SIZE, interpolation=cv2.INTER_AREA)
        if not np.array_equal(check[:720, :1280], want):
            raise AssertionError("a transformed layer differs from cv2.resize")
    out.add("transforms", "unscaled camera", samples["unscaled camera"], None)
    for name, transform in TRANSFORMS.items():
        caller = caller_time(lambda p, t=transform: transform_reference(p, t), big, 20)
        for kind in ("static", "live"):
            out.add("transforms", f"{name}, {kind}", samples[f"{name}, {kind}"], caller)


def bench_inputs(blocks: int, per_block: int, out: Results) -> None:
    width, height = CAMERA_SIZE
    with Engine(1920, 1080, slots=2, workers=1, damage=False) as eng:
        layers, camera_pixels = studio_layers(eng)
        camera = layers[CAMERA]
        pictures = {
            "rgba": camera_pixels,
            "bgra": cv2.cvtColor(camera_pixels, cv2.COLOR_RGBA2BGRA),
            "rgb": np.ascontiguousarray(camera_pixels[..., :3]),
            "bgr": cv2.cvtColor(camera_pixels, cv2.COLOR_RGBA2BGR),
            "i420": cv2.cvtColor(camera_pixels, cv2.COLOR_RGBA2YUV_I420),
        }
        i420 = pictures["i420"]
        nv12 = i420.copy()  # Y, then U and V interleaved
        chroma = width * height // 4
        u = i420[height:].reshape(-1)[:chroma]
        v = i420[height:].reshape(-1)[chroma:]
        nv12[height:].reshape(-1)[0::2] = u
        nv12[height:].reshape(-1)[1::2] = v
        pictures["nv12"] = nv12
        variants = {}
        for fmt in INPUTS:
            source = eng.live_source(width, height, format=fmt, opaque=True, yuv_matrix="bt601")
            stack = list(layers)
            stack[CAMERA] = Layer(source, x=camera.x, y=camera.y)
            write = publish(source, pictures[fmt])
            variants[fmt] = lambda s=stack, w=write: frame_time(eng, s, w)
        samples = alternate(variants, blocks, per_block, "input formats")
    for fmt in INPUTS:
        code = CV2_INPUT.get(fmt)
        caller = (
            None
            if code is None
            else caller_time(lambda p, c=code: cv2.cvtColor(p, c), pictures[fmt], 30)
        )
        out.add("inputs", fmt, samples[fmt], caller)


# libx264 presets a live pipeline uses: the fastest, and a common streaming trade-off.
ENCODE_PRESETS = ("ultrafast", "veryfast")


def show_frames(count: int) -> list[np.ndarray]:
    """1080p I420 frames of the demo's show (smooth pictures, as a real stream encodes)."""
    background = showcase.background(1920, 1080)
    painter = showcase.CameraPainter(1280, 720, 60.0)
    camera = np.empty((720, 1280, 4), np.uint8)
    frames = []
    for index in range(count):
        painter.paint(camera, index * 7)
        rgba = np.empty((1080, 1920, 4), np.uint8)
        composite_stack(rgba, [PixelLayer(background), PixelLayer(camera, x=320, y=144)])
        i420 = np.empty(FrameFormat.I420.shape(1920, 1080), np.uint8)
        convert_frame(rgba, i420, FrameFormat.I420)
        frames.append(i420)
    return frames


def bench_encode(blocks: int, per_block: int, out: Results) -> None:
    """PyAV's cost of encoding one 1080p I420 frame, beside what compositing it costs."""
    try:
        from framering.av import Encoder
    except ImportError:
        out.notes.append("encode skipped: PyAV is not installed (pip install 'framering[av]')")
        return
    frames = show_frames(8)
    for preset in ENCODE_PRESETS:
        sink = io.BytesIO()
        with Encoder(sink, 1920, 1080, 60, "h264", container_format="h264",
                     options={"preset": preset, "tune": "zerolatency"}) as encoder:  # fmt: skip
            for frame in frames:  # warm up: the first frames set up the encoder
                encoder.write(frame)
            samples = []
            for block in range(blocks):
                progress(f"encode libx264 {preset}: block {block + 1}/{blocks}")
                for i in range(per_block):
                    started = time.perf_counter()
                    encoder.write(frames[i % len(frames)])
                    samples.append(time.perf_counter() - started)
        out.add("encode", f"libx264 {preset}", samples, None)
    out.notes.append(
        "encode: PyAV libx264 with tune=zerolatency (no frame delay), its default threads "
        f"({os.cpu_count()} CPUs here); a worker composites while the caller encodes"
    )


def table(out: Results) -> str:
    lines = []
    baselines = {"delivery": "rgba", "transforms": "unscaled camera", "inputs": "rgba"}
    for section, baseline in baselines.items():
        base = out.get(section, baseline)
        lines.append(
            f"{section + ' (1080p, worker ms)':<34} {'median':>8} {'p90':>8} {'vs ' + baseline:>20}"
            f" {'cv2 in caller':>14} {'(1 thread)':>11}"
        )
        for row in out.rows:
            if row["section"] != section:
                continue
            caller, single = row["caller_cv2_ms"], row["caller_cv2_1_thread_ms"]
            lines.append(
                f"  {row['variant']:<32} {row['worker_ms']:>8.2f} {row['worker_p90_ms']:>8.2f} "
                f"{float(row['worker_ms']) / base:>19.2f}x "  # type: ignore[arg-type]
                f"{'' if caller is None else f'{caller:.2f}':>14} "
                f"{'' if single is None else f'{single:.2f}':>11}"
            )
        lines.append("")
    base = out.get("saturated", "rgba")
    lines.append(
        f"{'saturated (1080p, all workers)':<34} {'fps':>8} {'ms/frame':>8} {'vs rgba':>20}"
    )
    for row in out.rows:
        if row["section"] == "saturated":
            ms = float(row["worker_ms"])  # type: ignore[arg-type]
            lines.append(f"  {row['variant']:<32} {1e3 / ms:>8.0f} {ms:>8.3f} {ms / base:>19.2f}x")
    lines.append("")
    encodes = [row for row in out.rows if row["section"] == "encode"]
    if encodes:
        composite = out.get("delivery", "i420")
        lines.append(
            f"{'encode (1080p I420, PyAV, ms)':<34} {'median':>8} {'p90':>8} "
            f"{'vs i420 composite':>20}"
        )
        for row in encodes:
            ms = float(row["worker_ms"])  # type: ignore[arg-type]
            lines.append(
                f"  {row['variant']:<32} {ms:>8.2f} {row['worker_p90_ms']:>8.2f} "
                f"{ms / composite:>19.2f}x"
            )
        lines.append("")
    return "\n".join(lines)


def verdicts(out: Results) -> list[str]:
    lines = []
    for section, how in (("delivery", "one worker's time"), ("saturated", "all workers busy")):
        rgba = out.get(section, "rgba")
        for fmt in ("i420", "nv12"):
            ratio = out.get(section, fmt) / rgba
            verdict = "met" if ratio <= 1.3 else "MISSED"
            lines.append(
                f"{fmt} delivery costs {ratio:.2f}x rgba per frame, {how} (target <= 1.30x): "
                f"{verdict}"
            )
    unscaled = out.get("transforms", "unscaled camera")
    for name in ("scale bilinear", "scale area"):
        ratio = out.get("transforms", f"{name}, static") / unscaled
        verdict = "met" if ratio <= 1.1 else "MISSED"
        lines.append(
            f"static {name} layer costs {ratio:.2f}x the unscaled one (target ~1.0x, "
            f"<= 1.10x on this noisy machine): {verdict}"
        )
    return lines


def plot(out: Results, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out.notes.append("plot skipped: matplotlib is not installed (pip install '.[bench]')")
        return None
    sections = ("delivery", "transforms", "inputs")
    fig, axes = plt.subplots(1, 3, figsize=(18, 6), gridspec_kw={"width_ratios": [1, 3, 1.2]})
    for ax, section in zip(axes, sections, strict=True):
        rows = [r for r in out.rows if r["section"] == section]
        names = [str(r["variant"]) for r in rows]
        worker = [float(r["worker_ms"]) for r in rows]  # type: ignore[arg-type]
        caller = [np.nan if r["caller_cv2_ms"] is None else r["caller_cv2_ms"] for r in rows]
        xs = np.arange(len(rows))
        single = [
            np.nan if r["caller_cv2_1_thread_ms"] is None else r["caller_cv2_1_thread_ms"]
            for r in rows
        ]
        ax.bar(xs - 0.27, worker, 0.27, label="framering worker (1 thread): whole frame")
        ax.bar(xs, caller, 0.27, label="same OpenCV call in the caller, default threads (extra)")
        ax.bar(xs + 0.27, single, 0.27, label="same OpenCV call in the caller, 1 thread (extra)")
        ax.set_xticks(xs, names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("ms per 1080p frame (median)")
        ax.set_title(section + (" (the 1280x720 camera layer)" if section == "inputs" else ""))
        ax.grid(True, axis="y", alpha=0.3)
    axes[1].legend(fontsize=9, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="framering bench --formats", description=__doc__)
    parser.add_argument("--full", action="store_true", help="more blocks and frames")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results folder")
    args = parser.parse_args(argv)
    blocks, per_block = (7, 20) if args.full else (5, 8)
    if args.smoke:
        blocks, per_block = 1, 1
    started = time.perf_counter()
    progress(f"compiling kernels: {warmup():.1f} s")
    out = Results()
    bench_delivery(blocks, per_block, out)
    bench_saturated(blocks, 20 if args.smoke else 200, out)
    bench_transforms(blocks, per_block, out)
    bench_inputs(blocks, per_block, out)
    bench_encode(blocks, per_block, out)
    progress_done()
    stamp = results_stamp(args.out)
    picture = plot(out, args.out / f"formats-{stamp}.png")
    report(
        args.out / f"formats-{stamp}.json",
        table(out),
        "targets (from the formats issue):",
        verdicts(out),
        out.notes,
        {"rows": out.rows},
        [picture] if picture else [],
        mode="full" if args.full else "quick",
        started=started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
