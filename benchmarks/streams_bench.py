"""The streams benchmark: how many live streams one engine carries beside a greedy client, and
what bands do for the latency of a big frame.

- **Paced streams**: N animated studio-1080p streams at 30 fps (each its own camera, a live
  source publishing every frame, damage tracking on), each in its own thread with
  ``Stream.stream(policy="drop")``, started at staggered phases of the tick as independent
  shows would be, plus one greedy stream that keeps frames in flight as fast as it can (every
  layer moving: full damage). For each N: every paced stream's drops and p99 submit-to-done
  latency (from its 16th frame on: the first fill its slots whole), and the greedy stream's
  throughput. The answer is the largest N up to which every N tried had no paced stream
  dropping a frame or with a p99 of 10 ms or more (a pass at 16 after a failure at 12 is
  luck, not capacity); the largest N that passed alone is printed beside it.
- **Bands**: stress-4k (six full translucent 4K layers, every frame recomposited whole) as
  one stream at 30 fps, ``split="frame"`` against ``split="bands"``: median latency, the two
  engines taking turns block by block and the ratio read within each block.

    framering bench --streams [--full] [--workers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import logging
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from framering import Engine, Layer, Stream, physical_cores
from framering.kernels import LayerStack, composite_stack, warmup
from framering.kernels.workloads import build

from .damage_bench import Studio, move_step
from .timing import block_ratio, progress, progress_done, report, results_stamp

DEFAULT_RESULTS = Path("benchmarks") / "results"
FPS = 30.0
P99_LIMIT_S = 0.010
TARGET_STREAMS = 16
TARGET_BANDS_OF_FRAME = 0.6
# Blocks the bands comparison alternates its two engines over.
BAND_BLOCKS = 4
SPLITS = ("frame", "bands")
PACED_SLOTS = 3
GREEDY_SLOTS = 6
GREEDY_DEPTH = 5
# A stream's first frames fill its slots whole (a slot never used holds nothing to keep):
# latencies count from this frame on, the steady state of a running show. Drops count all.
WARM_UP_FRAMES = 15


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Plan:
    counts: tuple[int, ...]
    seconds: float
    band_seconds: float
    bound_rounds: int


def plan_for(full: bool, smoke: bool) -> Plan:
    if smoke:  # proves the pipeline runs; its figures mean nothing
        return Plan((1, 2), 1.0, 0.5, 2)
    if full:
        return Plan((1, 2, 4, 8, 12, 16, 20, 24), 8.0, 8.0, 30)
    return Plan((1, 4, 8, 12, 16, 20), 4.0, 4.0, 15)


@dataclass
class Results:
    rows: list[dict[str, object]] = field(default_factory=list)
    bands: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bands_bound: float | None = None
    """The kernel alone in this process: a frame's bands on as many threads at once, over
    the whole frame on one thread (the least bands / frame this machine's memory allows)."""


def kernel_bands_bound(workload_name: str, bands: int, rounds: int) -> float:
    """Median time of ``bands`` row bands of one frame composited on as many threads at once
    (the kernel releases the GIL), over the median time of the whole frame on one thread."""
    workload = build(workload_name)
    stack = LayerStack.prepare(workload.width, workload.height, list(workload.layers))
    frames = [np.empty((workload.height, workload.width, 4), np.uint8) for _ in range(2)]
    edges = [workload.height * k // bands // 2 * 2 for k in range(bands)] + [workload.height]
    composite_stack(frames[0], stack)
    whole, banded = [], []
    for index in range(rounds):
        frame = frames[index % 2]
        began = time.perf_counter()
        composite_stack(frame, stack)
        whole.append(time.perf_counter() - began)
        threads = [
            threading.Thread(target=composite_stack, args=(frame, stack), kwargs={"rows": rows})
            for rows in itertools.pairwise(edges)
        ]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        banded.append(time.perf_counter() - began)
    return statistics.median(banded) / statistics.median(whole)


def greedy(stream: Stream, scene: Studio, stop: threading.Event) -> None:
    """Frames as fast as the stream's slots allow, ``GREEDY_DEPTH`` in flight, every layer
    moving so that each frame is composited whole (a slot's previous frame differs)."""
    inflight: deque = deque()
    index = 0
    while not stop.is_set() or inflight:
        if not stop.is_set() and len(inflight) < GREEDY_DEPTH:
            slot = stream.try_acquire()
            if slot is not None:
                step = move_step(index)
                slot.submit([replace(layer, x=layer.x + step) for layer in scene.layers])
                index += 1
                inflight.append(slot)
                continue
        if inflight:
            done = inflight.popleft()
            done.wait(timeout=30)
            done.release()
        else:
            time.sleep(0.001)


def paced_run(
    eng: Engine, workload_name: str, count: int, seconds: float, freeze_heap: bool = True
) -> dict[str, object]:
    """``count`` paced studio streams and one greedy stream for ``seconds``; with
    ``freeze_heap``, the objects made before the run are frozen out of Python's garbage
    collections during it, as a live application should (docs/api.md, Live loops and the
    garbage collector): a full collection of this process's heap stops every stream of it
    for 55-100 ms here."""
    workload = build(workload_name)
    studios = [Studio(eng, workload) for _ in range(count + 1)]
    streams = [eng.open_stream(f"n{count}-show-{i}", slots=PACED_SLOTS) for i in range(count)]
    hog = eng.open_stream(f"n{count}-greedy", slots=GREEDY_SLOTS)
    stop = threading.Event()
    frames = int(seconds * FPS)
    interval = 1.0 / FPS

    latencies: list[list[float]] = [[] for _ in range(count)]

    def show(i: int) -> None:
        time.sleep(i * interval / count)  # independent shows: ticks at different phases
        studio = studios[i]
        for frame in streams[i].stream(lambda t, n: studio.animated(n), fps=FPS, frames=frames):
            if frame.index >= WARM_UP_FRAMES and not frame.repeated:
                latencies[i].append((frame.finished_ns - frame.submitted_ns) / 1e9)

    hog_thread = threading.Thread(target=greedy, args=(hog, studios[-1], stop), daemon=True)
    threads = [threading.Thread(target=show, args=(i,), daemon=True) for i in range(count)]
    if freeze_heap:
        gc.collect()
        gc.freeze()
    try:
        hog_thread.start()
        time.sleep(0.3)
        greedy_before = hog.metrics().frames_completed
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds * 4 + 30)
        elapsed = time.perf_counter() - began
        greedy_fps = (hog.metrics().frames_completed - greedy_before) / elapsed
        figures = [stream.metrics() for stream in streams]
    finally:
        if freeze_heap:
            gc.unfreeze()
    stop.set()
    hog_thread.join(30)
    for stream in [*streams, hog]:
        stream.close()
    for studio in studios:
        studio.free(eng)
    p99 = [percentile(values, 99) for values in latencies]
    dropped = [m.dropped for m in figures]
    return {
        "streams": count,
        "ok": all(d == 0 for d in dropped) and max(p99) < P99_LIMIT_S,
        "dropped": sum(dropped),
        "late": sum(m.late for m in figures),
        "p99_max_s": max(p99),
        "p99_median_s": statistics.median(p99),
        "p99_each_s": p99,
        "p50_median_s": statistics.median(percentile(values, 50) for values in latencies),
        "greedy_fps": greedy_fps,
    }


def bench_paced(plan: Plan, workers: int, out: Results, freeze_heap: bool = True) -> None:
    slots = PACED_SLOTS * max(plan.counts) + GREEDY_SLOTS + 2
    with Engine(1920, 1080, slots=slots, workers=workers) as eng:
        for count in plan.counts:
            progress(f"paced: {count} x studio-1080p at {FPS:g} fps + 1 greedy")
            row = paced_run(eng, "studio-1080p", count, plan.seconds, freeze_heap)
            out.rows.append(row)
    out.notes.append(
        "paced runs: the process's heap was frozen (gc.freeze) during each run"
        if freeze_heap
        else "paced runs: Python's garbage collector ran as it does by default (--no-gc-freeze)"
    )


def bench_bands(plan: Plan, workers: int, out: Results) -> None:
    """stress-4k as one paced stream, whole frames against bands, at 30 fps or, where this
    machine cannot make 30 fps of whole frames, at the rate that keeps frame mode's workers
    half busy (a stream that keeps up; latencies of an overloaded one mean nothing).

    Both engines stay alive and take turns in ``BAND_BLOCKS`` blocks (which goes first
    alternates), and the verdict reads the median of the per-block ratios of median latency:
    this VM's speed drifts more between two runs a few seconds apart than bands change it."""
    workload = build("stress-4k")
    engines: dict[str, Engine] = {}
    try:
        scenes = {}
        for split in SPLITS:
            eng = engines[split] = Engine(
                workload.width, workload.height, slots=4, workers=workers, damage=False, split=split
            )
            sources = [eng.upload(layer.pixels) for layer in workload.layers]
            layers = [
                Layer(source, x=layer.x, y=layer.y, opacity=layer.opacity)
                for source, layer in zip(sources, workload.layers, strict=True)
            ]
            for _ in range(3):
                eng.render(layers, timeout=60)
            scenes[split] = lambda t, i, layers=layers: layers
        kernel = engines["frame"].metrics().kernel_p50
        fps = min(FPS, 0.5 * workers / kernel)
        if fps < FPS:
            out.notes.append(
                f"stress-4k: a whole frame takes {kernel * 1e3:.0f} ms of one worker "
                f"here, so the bands comparison ran at {fps:.1f} fps, not {FPS:g}"
            )
        frames = max(3, int(plan.band_seconds * fps / BAND_BLOCKS))
        latencies: dict[str, list[float]] = {split: [] for split in SPLITS}
        block_p50: dict[str, list[float]] = {split: [] for split in SPLITS}
        delivered = dict.fromkeys(SPLITS, 0)
        elapsed = dict.fromkeys(SPLITS, 0.0)
        before = {split: eng.metrics().frames_completed for split, eng in engines.items()}
        for block in range(BAND_BLOCKS):
            for split in SPLITS if block % 2 == 0 else SPLITS[::-1]:
                progress(
                    f"bands: stress-4k at {fps:.3g} fps, split={split}, block {block + 1}/"
                    f"{BAND_BLOCKS}"
                )
                block_latencies = []
                began = time.perf_counter()
                for frame in engines[split].stream(
                    scenes[split], fps=fps, frames=frames, policy="drop"
                ):
                    delivered[split] += 1
                    if not frame.repeated:
                        block_latencies.append((frame.finished_ns - frame.submitted_ns) / 1e9)
                elapsed[split] += time.perf_counter() - began
                latencies[split] += block_latencies
                block_p50[split].append(statistics.median(block_latencies))
        for split, eng in engines.items():
            metrics = eng.metrics()
            out.bands.append(
                {
                    "split": split,
                    "fps": fps,
                    "latency_p50_s": statistics.median(latencies[split]),
                    "latency_p99_s": percentile(latencies[split], 99),
                    "block_latency_p50_s": block_p50[split],
                    "kernel_p50_s": metrics.kernel_p50,
                    "delivered_fps": delivered[split] / elapsed[split],
                    "frames": metrics.frames_completed - before[split],
                    "banded_frames": metrics.banded_frames,
                }
            )
    finally:
        for eng in engines.values():
            eng.close()
    if workers > 1:
        progress(f"bands: the kernel alone, stress-4k in {workers} bands on {workers} threads")
        out.bands_bound = kernel_bands_bound("stress-4k", workers, plan.bound_rounds)


def table(out: Results) -> str:
    header = (
        f"{'paced':>5} {'ok':>3} {'dropped':>7} {'late':>5} {'p50 med ms':>10} "
        f"{'p99 med ms':>10} {'p99 max ms':>10} {'greedy fps':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in out.rows:
        lines.append(
            f"{row['streams']:>5} {'yes' if row['ok'] else 'no':>3} {row['dropped']:>7} "
            f"{row['late']:>5} {float(row['p50_median_s']) * 1e3:>10.2f} "  # type: ignore[arg-type]
            f"{float(row['p99_median_s']) * 1e3:>10.2f} "  # type: ignore[arg-type]
            f"{float(row['p99_max_s']) * 1e3:>10.2f} {float(row['greedy_fps']):>10.1f}"  # type: ignore[arg-type]
        )
    lines.append("")
    header = (
        f"{'stress-4k':<10} {'asked fps':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'worker ms/frame':>15} {'fps':>6}"
    )
    lines += [header, "-" * len(header)]
    for row in out.bands:
        lines.append(
            f"{row['split']:<10} {float(row['fps']):>9.1f} "  # type: ignore[arg-type]
            f"{float(row['latency_p50_s']) * 1e3:>8.1f} "  # type: ignore[arg-type]
            f"{float(row['latency_p99_s']) * 1e3:>8.1f} "  # type: ignore[arg-type]
            f"{float(row['kernel_p50_s']) * 1e3:>15.1f} {float(row['delivered_fps']):>6.1f}"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def verdicts(out: Results) -> list[str]:
    held = 0  # every N tried up to this one passed
    for row in sorted(out.rows, key=lambda r: int(r["streams"])):  # type: ignore[call-overload]
        if not row["ok"]:
            break
        held = int(row["streams"])  # type: ignore[call-overload]
    passing = [int(row["streams"]) for row in out.rows if row["ok"]]  # type: ignore[call-overload]
    lines = [
        f"{'met   ' if held >= TARGET_STREAMS else 'MISSED'} paced 30 fps studio streams with no "
        f"drop and p99 < {P99_LIMIT_S * 1e3:g} ms beside a greedy stream: held up to {held} "
        f"(target >= {TARGET_STREAMS}; tried {', '.join(str(r['streams']) for r in out.rows)}; "
        f"the largest that passed: {max(passing, default=0)})"
    ]
    by_split = {row["split"]: row for row in out.bands}
    if {"frame", "bands"} <= by_split.keys():
        ratio = block_ratio(
            by_split["bands"]["block_latency_p50_s"],  # type: ignore[arg-type]
            by_split["frame"]["block_latency_p50_s"],  # type: ignore[arg-type]
        )
        bound = (
            ""
            if out.bands_bound is None
            else f"; the kernel alone, bands on threads at once / whole frame on one thread, "
            f"on this machine: {out.bands_bound:.2f}x"
        )
        lines.append(
            f"{'met   ' if ratio <= TARGET_BANDS_OF_FRAME else 'MISSED'} stress-4k median "
            f"latency, bands / frame (median of {BAND_BLOCKS} blocks' ratios): {ratio:.2f}x "
            f"(target <= {TARGET_BANDS_OF_FRAME}x{bound})"
        )
    return lines


def plot(out: Results, folder: Path, stamp: str) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out.notes.append("plot skipped: matplotlib is not installed (pip install '.[bench]')")
        return []
    counts = [int(row["streams"]) for row in out.rows]  # type: ignore[call-overload]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(counts, [float(r["p99_max_s"]) * 1e3 for r in out.rows], "o-", label="worst p99")  # type: ignore[arg-type]
    left.plot(counts, [float(r["p99_median_s"]) * 1e3 for r in out.rows], "o-", label="median p99")  # type: ignore[arg-type]
    left.axhline(P99_LIMIT_S * 1e3, color="grey", linestyle="--", label="10 ms")
    left.set_xlabel("paced 30 fps studio-1080p streams")
    left.set_ylabel("submit-to-done latency, ms")
    left.legend()
    right.plot(counts, [float(r["greedy_fps"]) for r in out.rows], "s-", color="tab:red")  # type: ignore[arg-type]
    right.set_xlabel("paced streams beside it")
    right.set_ylabel("greedy stream, frames per second")
    figure.suptitle("many streams on one engine")
    figure.tight_layout()
    path = folder / f"streams-{stamp}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="framering bench --streams", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--full", action="store_true", help="more stream counts, longer runs")
    parser.add_argument("--workers", type=int, default=physical_cores())
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results folder")
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="leave Python's garbage collector as it is during the paced runs",
    )
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = plan_for(args.full, args.smoke)
    out = Results()
    started = time.perf_counter()
    progress(f"compiling kernels: {warmup():.1f} s")
    workers = max(1, args.workers)
    # the table counts every drop; a warning per overloaded stream would only bury it
    logging.getLogger("framering").setLevel(logging.ERROR)
    bench_paced(plan, workers, out, freeze_heap=not args.no_gc_freeze)
    bench_bands(plan, workers, out)
    progress_done()
    stamp = results_stamp(args.out)
    report(
        args.out / f"streams-{stamp}.json",
        table(out),
        "targets (from the stream-manager issue):",
        verdicts(out),
        out.notes,
        {"paced": out.rows, "bands": out.bands, "bands_bound": out.bands_bound, "workers": workers},
        plot(out, args.out, stamp),
        mode="full" if args.full else "quick",
        started=started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
