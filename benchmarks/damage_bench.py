"""The damage benchmark: what recompositing only what changed saves, and what the parent costs.

In one run on this machine, studio-1080p (stress-4k too, for scaling):

- **animated studio**: the camera is a live source that publishes a picture every frame and
  the logo's opacity changes every frame; **static studio**: nothing changes; **everything
  moves**: every layer moves every frame (full damage). Each with damage tracking on and off
  (``Engine(damage=False)``, the baseline), as many frames in flight as keep every worker
  busy: throughput, worker CPU per frame (the worker processes' CPU time over the frames
  made), parent CPU per frame (the whole parent process, every thread), share recomposited;
  on and off alternate block by block, and each on/off ratio is the median of the blocks'.
- **parent CPU per frame**, the studio unchanged and with two layers moved, back to back and
  paced at 60 fps (one frame in flight, waited for).
- **full compositing** (``damage=False``): the engine with 1 worker against the same kernel
  in-process writing into as many frames in rotation as the engine's ring holds, and 2
  workers against 1, beside the kernel alone on 2 threads against 1 (what this machine's
  cores and memory allow any two compositors at once). The four alternate block by block
  and the ratios are read within each block (the median of them).

The producer's own work (a decoder writing the camera's pixels) is not the compositor's: the
animated camera publishes by writing one row of a buffer that already holds its picture.

    framering bench --damage [--full] [--workers N] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import statistics
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil

from framering import Engine, Layer, LiveSource, physical_cores
from framering.kernels import LayerStack, composite_stack, warmup
from framering.kernels.workloads import Workload, build

from .parent_steps import cold_wake_cost, count_calls, paced_idle_cpu, thread_round_trip_cpu
from .timing import block_ratio, paced_ticks, progress, progress_done, report, results_stamp

DEFAULT_RESULTS = Path("benchmarks") / "results"

# Targets of the damage issue; the report says met or missed.
TARGET_ANIMATED_SPEEDUP = 2.0
TARGET_ANIMATED_WORKER_CPU = 2.5
TARGET_STATIC_SPEEDUP = 10.0
TARGET_FULL_DAMAGE_LOSS = 0.03
TARGET_PARENT_BACK_TO_BACK_S = 60e-6
TARGET_PARENT_PACED_S = 120e-6
TARGET_ENGINE_OF_KERNEL = 0.90
TARGET_SCALING = 1.8
# The paced parent figures are frames of a 60 fps live loop.
PACED_FPS = 60.0
# Moved layers step through this many positions: a slot's last frame (a few frames back, as a
# stream gets its own newest free slot) never had the step of the frame it is about to hold,
# so "moved" is moved against what the slot holds, whatever the depth in flight.
MOVE_PERIOD = 89


def move_step(index: int) -> int:
    """How far the moving layers of frame ``index`` are from where they started."""
    return index % MOVE_PERIOD


Scene = Callable[[int], list[Layer]]


@dataclass(frozen=True)
class Plan:
    seconds: float
    blocks: int
    paced_seconds: float
    workers: int
    scaling_workloads: tuple[str, ...]


def plan_for(full: bool, workers: int, smoke: bool) -> Plan:
    if smoke:  # proves the pipeline runs; its figures mean nothing
        return Plan(0.2, 1, 0.3, workers, ("studio-1080p",))
    if full:
        return Plan(2.0, 5, 10.0, workers, ("studio-1080p", "stress-4k"))
    return Plan(1.0, 3, 3.0, workers, ("studio-1080p", "stress-4k"))


@dataclass
class Run:
    """One measured stretch of frames."""

    frames: int
    seconds: float
    parent_cpu_s: float
    worker_cpu_s: float
    damaged_fraction: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def parent_cpu_per_frame(self) -> float:
        return self.parent_cpu_s / self.frames

    @property
    def worker_cpu_per_frame(self) -> float:
        return self.worker_cpu_s / self.frames


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the parent
    return usage.ru_utime + usage.ru_stime


def workers_cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


class Studio:
    """The studio workload on one engine: uploaded stills and the camera as a live source."""

    def __init__(self, eng: Engine, workload: Workload) -> None:
        background, camera, lower_third, logo = workload.layers
        self.camera: LiveSource = eng.live_source(
            camera.pixels.shape[1], camera.pixels.shape[0], buffers=3, opaque=True
        )
        for _ in range(3):  # every buffer holds the camera's picture
            with self.camera.write() as buffer:
                buffer[...] = camera.pixels
        self.layers = [
            Layer(eng.upload(background.pixels), x=background.x, y=background.y),
            Layer(self.camera, x=camera.x, y=camera.y),
            Layer(
                eng.upload(lower_third.pixels),
                x=lower_third.x,
                y=lower_third.y,
                opacity=lower_third.opacity,
            ),
            Layer(eng.upload(logo.pixels), x=logo.x, y=logo.y, opacity=logo.opacity),
        ]
        self._opacities = [replace(self.layers[3], opacity=0.5 + i / 100) for i in range(50)]

    def static(self, index: int) -> list[Layer]:
        return self.layers

    def free(self, eng: Engine) -> None:
        """Let the studio's sources go (for a benchmark that makes many studios)."""
        for layer in self.layers:
            eng.free(layer.source)  # type: ignore[arg-type]

    def animated(self, index: int) -> list[Layer]:
        with self.camera.write() as buffer:
            buffer[0, :16] = index & 0xFF  # a new picture (the rest of it is the camera's)
        return [*self.layers[:3], self._opacities[index % 50]]

    def two_moved(self, index: int) -> list[Layer]:
        step = move_step(index)
        lower, logo = self.layers[2], self.layers[3]
        return [*self.layers[:2], replace(lower, y=lower.y - step), replace(logo, x=logo.x - step)]

    def everything_moves(self, index: int) -> list[Layer]:
        step = move_step(index)
        return [replace(layer, x=layer.x + step, y=layer.y + step) for layer in self.layers]


def saturated(eng: Engine, scene: Scene, seconds: float, depth: int) -> Run:
    """Frames back to back with ``depth`` in flight, for ``seconds``."""
    processes = [psutil.Process(pid) for pid in eng.worker_pids()]
    in_flight: deque = deque()
    frames = index = 0
    parent0, workers0 = process_cpu(), workers_cpu(processes)
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        slot = eng.acquire(timeout=30)
        slot.submit(scene(index))
        index += 1
        in_flight.append(slot)
        while len(in_flight) >= depth or (in_flight and in_flight[0].done):
            done = in_flight.popleft()
            done.wait(timeout=30)
            done.release()
            frames += 1
    while in_flight:
        done = in_flight.popleft()
        done.wait(timeout=30)
        done.release()
        frames += 1
    elapsed = time.perf_counter() - began
    fraction = eng.metrics().damaged_fraction
    return Run(
        frames, elapsed, process_cpu() - parent0, workers_cpu(processes) - workers0, fraction
    )


def paced(eng: Engine, scene: Scene, fps: float, seconds: float) -> Run:
    """One frame a tick, waited for before the next tick, as a live loop with no lead."""
    processes = [psutil.Process(pid) for pid in eng.worker_pids()]
    count = max(1, int(seconds * fps))
    parent0, workers0 = process_cpu(), workers_cpu(processes)
    began = time.perf_counter()
    for index, _ in paced_ticks(fps, count):
        with eng.acquire(timeout=30) as slot:
            slot.submit(scene(index))
            slot.wait(timeout=30)
    elapsed = time.perf_counter() - began
    fraction = eng.metrics().damaged_fraction
    return Run(count, elapsed, process_cpu() - parent0, workers_cpu(processes) - workers0, fraction)


def median_run(runs: list[Run]) -> Run:
    """The run of median throughput (its CPU figures belong to the same stretch)."""
    return sorted(runs, key=lambda r: r.fps)[len(runs) // 2]


@dataclass
class Results:
    rows: list[dict[str, object]]
    notes: list[str]
    steps: dict[str, float] = field(default_factory=dict)
    """The parent's Python calls per frame and a thread round trip's CPU (``parent_steps``)."""

    def add(self, section: str, case: str, damage: bool | None, run: Run, **extra: object) -> None:
        self.rows.append(
            {
                "section": section,
                "case": case,
                "damage": damage,
                "fps": run.fps,
                "frames": run.frames,
                "parent_cpu_per_frame_s": run.parent_cpu_per_frame,
                "worker_cpu_per_frame_s": run.worker_cpu_per_frame,
                "damaged_fraction": run.damaged_fraction,
                **extra,
            }
        )

    def get(self, section: str, case: str, damage: bool | None) -> dict[str, object]:
        for row in self.rows:
            if (row["section"], row["case"], row["damage"]) == (section, case, damage):
                return row
        raise KeyError((section, case, damage))


def bench_scenes(workload: Workload, plan: Plan, out: Results) -> None:
    depth = 2 * plan.workers + 1
    cases = ("static", "animated", "everything moves")
    engines = {
        damage: Engine(
            workload.width, workload.height, slots=depth + 2, workers=plan.workers, damage=damage
        )
        for damage in (True, False)
    }
    try:
        studios = {damage: Studio(eng, workload) for damage, eng in engines.items()}
        scenes = {
            damage: {
                "static": s.static,
                "animated": s.animated,
                "everything moves": s.everything_moves,
                "two moved": s.two_moved,
            }
            for damage, s in studios.items()
        }
        for damage, eng in engines.items():
            saturated(eng, scenes[damage]["animated"], 0.3, depth)  # warm-up
        runs: dict[tuple[str, bool], list[Run]] = {}
        for block in range(plan.blocks):
            for case in cases:
                for damage in (True, False):  # alternated: a noisy machine hits both alike
                    label = "on" if damage else "off"
                    progress(f"{case}, damage {label}: block {block + 1}/{plan.blocks}")
                    run = saturated(engines[damage], scenes[damage][case], plan.seconds, depth)
                    runs.setdefault((case, damage), []).append(run)
        for (case, damage), case_runs in runs.items():
            out.add(
                "throughput",
                case,
                damage,
                median_run(case_runs),
                workers=plan.workers,
                block_fps=[run.fps for run in case_runs],
                block_worker_cpu_per_frame_s=[run.worker_cpu_per_frame for run in case_runs],
            )
        eng = engines[True]
        for case in ("static", "two moved"):
            progress(f"parent CPU, {case}: back to back")
            back = [saturated(eng, scenes[True][case], plan.seconds, depth) for _ in range(3)]
            out.add("parent", f"{case}, back to back", True, median_run(back))
            progress(f"parent CPU, {case}: paced at 60 fps")
            out.add(
                "parent",
                f"{case}, paced 60 fps",
                True,
                paced(eng, scenes[True][case], PACED_FPS, plan.paced_seconds),
            )
    finally:
        for eng in engines.values():
            eng.close()


def bench_parent_steps(workload: Workload, plan: Plan, out: Results) -> None:
    """Python calls per frame (still, two moved; back to back) and a thread round trip's CPU:
    the parent's figures read without this machine's noise."""
    depth = 2 * plan.workers + 1

    def run(eng: Engine, scene: Scene, seconds: float) -> int:
        return saturated(eng, scene, seconds, depth).frames

    for case, name in (("static", "static"), ("two moved", "two_moved")):
        progress(f"parent: Python calls a frame, {case}")
        count = count_calls(
            workload,
            lambda eng, name=name: getattr(Studio(eng, workload), name),  # type: ignore[misc]
            run,
            workers=plan.workers,
            slots=depth + 2,
            seconds=min(plan.seconds, 1.0),
        )
        out.steps[f"{case}: python calls per frame"] = count.python_per_frame
        out.steps[f"{case}: C calls per frame"] = count.c_per_frame
        out.notes.append(
            f"parent, {case}, back to back: {count.python_per_frame:.0f} Python calls and "
            f"{count.c_per_frame:.0f} C calls a frame (every parent thread)"
        )
    round_trip = thread_round_trip_cpu()
    out.steps["thread round trip cpu s"] = round_trip
    out.notes.append(
        f"a lock handed between two threads and back costs this machine {round_trip * 1e6:.1f} us "
        f"of CPU (the price of every sleep and wake-up a frame crosses)"
    )
    idle = paced_idle_cpu(PACED_FPS, min(plan.paced_seconds, 2.0))
    out.steps["paced idle loop cpu per tick s"] = idle
    out.notes.append(
        f"a loop that only sleeps to each tick of {PACED_FPS:g} fps costs this machine "
        f"{idle * 1e6:.0f} us of CPU a tick: the floor under the paced parent figures"
    )
    cold = cold_wake_cost()
    out.steps["python hot s"] = cold.hot_s
    out.steps["python after a sleep s"] = cold.after_sleep_s
    out.notes.append(
        f"a fixed piece of Python takes {cold.hot_s * 1e6:.1f} us of CPU back to back and "
        f"{cold.after_sleep_s * 1e6:.1f} us right after a {cold.sleep_s * 1e3:.1f} ms sleep "
        f"({cold.ratio:.1f}x): what a paced frame's code pays on this machine for running cold"
    )


def bench_full_compositing(name: str, plan: Plan, out: Results) -> None:
    """damage=False: 1 worker against the in-process kernel in rotation, and N against 1.

    Every block measures all four (the kernel on 1 thread, the engine with 1 worker, the
    kernel on N threads, the engine with N workers) one after the other, both engines alive
    throughout, and the verdicts read the ratios within each block: on a machine whose speed
    drifts by a third from one minute to the next (the VMs this project has seen), a ratio of
    two figures taken a minute apart measures the drift as much as the engine."""
    workload = build(name)
    slots = 2 * plan.workers + 3
    frames = [np.empty((workload.height, workload.width, 4), np.uint8) for _ in range(slots)]
    stack = LayerStack.prepare(workload.width, workload.height, list(workload.layers))
    composite_stack(frames[0], stack)
    counts = sorted({1, plan.workers})
    engines: dict[int, Engine] = {}
    try:
        scenes: dict[int, Scene] = {}
        for workers in counts:
            eng = engines[workers] = Engine(
                workload.width, workload.height, slots=slots, workers=workers, damage=False
            )
            layers = [
                Layer(
                    eng.upload(layer.pixels),
                    x=layer.x,
                    y=layer.y,
                    opacity=layer.opacity,
                    blend=layer.blend,
                )
                for layer in workload.layers
            ]
            scenes[workers] = lambda index, layers=layers: layers
            saturated(eng, scenes[workers], 0.3, 2 * workers + 1)
        kernel_rates: dict[int, list[float]] = {count: [] for count in counts}
        engine_runs: dict[int, list[Run]] = {count: [] for count in counts}
        for block in range(plan.blocks):
            for count in counts:
                progress(
                    f"{name}: in-process kernel on {count} thread(s) into {slots} frames in "
                    f"rotation, then the engine with {count} worker(s), block {block + 1}"
                )
                kernel_rates[count].append(in_process_rate(stack, frames, count, plan.seconds))
                engine_runs[count].append(
                    saturated(engines[count], scenes[count], plan.seconds, 2 * count + 1)
                )
        for count in counts:
            out.rows.append(
                {
                    "section": "full",
                    "case": f"{name}, in-process kernel" + (f", {count} threads" * (count > 1)),
                    "damage": None,
                    "fps": statistics.median(kernel_rates[count]),
                    "block_fps": kernel_rates[count],
                    "rotation": slots,
                }
            )
        for count in counts:
            out.add(
                "full",
                f"{name}, engine",
                False,
                median_run(engine_runs[count]),
                workers=count,
                block_fps=[run.fps for run in engine_runs[count]],
            )
    finally:
        for eng in engines.values():
            eng.close()


def in_process_rate(
    stack: LayerStack, frames: list[np.ndarray], threads: int, seconds: float
) -> float:
    """Frames a second of the kernel alone, on ``threads`` threads of this process at once
    (it releases the GIL), each frame the next of ``frames`` in rotation: what the machine's
    cores and memory give the kernel, against which the engine's workers are read."""
    taken = itertools.count()
    made = [0] * threads
    ends = time.perf_counter() + seconds

    def composite(thread: int) -> None:
        while time.perf_counter() < ends:
            composite_stack(frames[next(taken) % len(frames)], stack)
            made[thread] += 1

    began = time.perf_counter()
    workers = [threading.Thread(target=composite, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(made) / (time.perf_counter() - began)


def verdicts(out: Results, plan: Plan) -> list[str]:
    lines = []

    def line(what: str, value: str, ok: bool) -> None:
        lines.append(f"{'met   ' if ok else 'MISSED'} {what}: {value}")

    def cpu(section: str, case: str, damage: bool | None, key: str) -> float:
        return float(out.get(section, case, damage)[key])  # type: ignore[arg-type]

    def per_block(case: str, key: str, on_over_off: bool) -> float:
        on: list[float] = out.get("throughput", case, True)[key]  # type: ignore[assignment]
        off: list[float] = out.get("throughput", case, False)[key]  # type: ignore[assignment]
        return block_ratio(on, off) if on_over_off else block_ratio(off, on)

    def blocks(case: str, workers: int | None = None) -> list[float]:
        return next(
            r["block_fps"]  # type: ignore[misc]
            for r in out.rows
            if r["case"] == case and (workers is None or r.get("workers") == workers)
        )

    animated = per_block("animated", "block_fps", True)
    line(
        f"animated studio, damage on/off, {plan.workers} workers (median of per-block ratios)",
        f"{animated:.2f}x (target >= {TARGET_ANIMATED_SPEEDUP}x)",
        animated >= TARGET_ANIMATED_SPEEDUP,
    )
    worker = per_block("animated", "block_worker_cpu_per_frame_s", False)
    line(
        "animated studio, worker CPU per frame off/on",
        f"{worker:.2f}x lower (target >= {TARGET_ANIMATED_WORKER_CPU}x)",
        worker >= TARGET_ANIMATED_WORKER_CPU,
    )
    static = per_block("static", "block_fps", True)
    line(
        "static studio, damage on/off",
        f"{static:.1f}x (target >= {TARGET_STATIC_SPEEDUP:g}x)",
        static >= TARGET_STATIC_SPEEDUP,
    )
    full = per_block("everything moves", "block_fps", True)
    line(
        "everything moves, damage on/off",
        f"{full:.3f} (target >= {1 - TARGET_FULL_DAMAGE_LOSS:.2f})",
        full >= 1 - TARGET_FULL_DAMAGE_LOSS,
    )
    idle = out.steps.get("paced idle loop cpu per tick s")
    idle_floor = "" if idle is None else f"; sleeping to the tick alone costs {idle * 1e6:.0f}"
    for case in ("static", "two moved"):
        back = cpu("parent", f"{case}, back to back", True, "parent_cpu_per_frame_s")
        line(
            f"parent CPU per frame, {case}, back to back",
            f"{back * 1e6:.0f} us (target <= {TARGET_PARENT_BACK_TO_BACK_S * 1e6:.0f})",
            back <= TARGET_PARENT_BACK_TO_BACK_S,
        )
        pace = cpu("parent", f"{case}, paced 60 fps", True, "parent_cpu_per_frame_s")
        line(
            f"parent CPU per frame, {case}, paced at 60 fps",
            f"{pace * 1e6:.0f} us (target <= {TARGET_PARENT_PACED_S * 1e6:.0f}{idle_floor})",
            pace <= TARGET_PARENT_PACED_S,
        )
    for name in plan.scaling_workloads:
        kernel = blocks(f"{name}, in-process kernel")
        one = blocks(f"{name}, engine", 1)
        of_kernel = block_ratio(one, kernel)
        line(
            f"{name}, full compositing, 1 worker / in-process kernel (median of per-block ratios)",
            f"{of_kernel:.0%} (target >= {TARGET_ENGINE_OF_KERNEL:.0%})",
            of_kernel >= TARGET_ENGINE_OF_KERNEL,
        )
        if plan.workers > 1:
            many = blocks(f"{name}, engine", plan.workers)
            threads = blocks(f"{name}, in-process kernel, {plan.workers} threads")
            scaling = block_ratio(many, one)
            line(
                f"{name}, full compositing, {plan.workers} workers / 1 (median of per-block "
                f"ratios)",
                f"{scaling:.2f}x (target >= {TARGET_SCALING}x; the kernel alone on "
                f"{plan.workers} threads / 1 on this machine: {block_ratio(threads, kernel):.2f}x)",
                scaling >= TARGET_SCALING,
            )
    return lines


def table(out: Results) -> str:
    header = (
        f"{'section':<11} {'case':<34} {'damage':<6} {'fps':>9} {'parent us/f':>11} "
        f"{'worker us/f':>11} {'damaged':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in out.rows:
        damage = {True: "on", False: "off", None: "-"}[row["damage"]]  # type: ignore[index]
        parent = row.get("parent_cpu_per_frame_s")
        worker = row.get("worker_cpu_per_frame_s")
        fraction = row.get("damaged_fraction")
        case = str(row["case"]) + (f" ({row['workers']} w)" if "workers" in row else "")
        lines.append(
            f"{row['section']:<11} {case:<34} {damage:<6} {float(row['fps']):>9.1f} "  # type: ignore[arg-type]
            f"{'' if parent is None else f'{float(parent) * 1e6:.0f}':>11} "  # type: ignore[arg-type]
            f"{'' if worker is None else f'{float(worker) * 1e6:.0f}':>11} "  # type: ignore[arg-type]
            f"{'' if fraction is None else f'{float(fraction):.0%}':>8}"  # type: ignore[arg-type]
        )
    return "\n".join(lines)


def plot(out: Results, folder: Path, stamp: str) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        out.notes.append("plot skipped: matplotlib is not installed (pip install '.[bench]')")
        return []

    cases = ("static", "animated", "everything moves")
    on = [float(out.get("throughput", c, True)["fps"]) for c in cases]  # type: ignore[arg-type]
    off = [float(out.get("throughput", c, False)["fps"]) for c in cases]  # type: ignore[arg-type]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    x = np.arange(len(cases))
    axis.bar(x - 0.2, off, 0.4, label="damage=False")
    axis.bar(x + 0.2, on, 0.4, label="damage tracking")
    axis.set_xticks(x, cases)
    axis.set_yscale("log")
    axis.set_ylabel("frames per second (log)")
    axis.set_title("studio-1080p: recompositing only what changed")
    axis.legend()
    figure.tight_layout()
    path = folder / f"damage-{stamp}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="framering bench --damage", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--full", action="store_true", help="longer runs")
    parser.add_argument("--workers", type=int, default=physical_cores())
    parser.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results folder")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = plan_for(args.full, max(1, args.workers), args.smoke)
    out = Results([], [])
    started = time.perf_counter()
    progress(f"compiling kernels: {warmup():.1f} s")
    studio = build("studio-1080p")
    bench_scenes(studio, plan, out)
    bench_parent_steps(studio, plan, out)
    for name in plan.scaling_workloads:
        bench_full_compositing(name, plan, out)
    progress_done()
    stamp = results_stamp(args.out)
    report(
        args.out / f"damage-{stamp}.json",
        table(out),
        "targets (from the damage-tracking issue):",
        verdicts(out, plan),
        out.notes,
        {"rows": out.rows, "parent_steps": out.steps},
        plot(out, args.out, stamp),
        mode="full" if args.full else "quick",
        started=started,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
