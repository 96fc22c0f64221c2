"""Timing helpers shared by the benchmarks: blocks of repetitions, summaries, progress."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import psutil

from framering.kernels.cpu import host_cpu


def timed_blocks(
    tools: dict[str, Callable[[], object]], blocks: int, per_block: int, label: str
) -> dict[str, list[float]]:
    """Seconds per call of each tool: ``blocks`` rounds, each timing ``per_block`` calls.

    Blocks of the tools alternate, so that drift of a noisy machine hits all of them alike;
    one warm-up call each comes first (caches, page faults, JIT).
    """
    samples: dict[str, list[float]] = {name: [] for name in tools}
    for tool in tools.values():
        tool()
    for block in range(blocks):
        for name, tool in tools.items():
            for _ in range(per_block):
                started = time.perf_counter()
                tool()
                samples[name].append(time.perf_counter() - started)
        progress(f"{label}: block {block + 1}/{blocks}")
    return samples


def block_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median over blocks of one figure over another measured in the same block: on a
    machine whose speed drifts from one minute to the next, a ratio of two figures taken a
    minute apart measures the drift as much as what is compared."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def summary(values: list[float]) -> dict[str, float | int]:
    """Median, min, max and count of repeated measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "repetitions": len(values),
    }


def paced_ticks(fps: float, count: int) -> Iterator[tuple[int, float]]:
    """``(index, tick)`` for ``count`` ticks of ``fps`` from now, each once its tick has come
    (sleeping until then): the clock of every paced loop of the benchmarks, so that they all,
    and the floor measured under them, sleep alike."""
    interval = 1.0 / fps
    began = time.perf_counter()
    for index in range(count):
        tick = began + index * interval
        now = time.perf_counter()
        if tick > now:
            time.sleep(tick - now)
        yield index, tick


def progress(text: str) -> None:
    """One status line on stderr, rewritten in place."""
    print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def progress_done() -> None:
    print(file=sys.stderr)


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 9B14", "Intel(R) Xeon(R) Platinum 8481C CPU ..."):
    figures differ between CPUs, so every run says which one it was measured on."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line saying where a run was measured, printed with every benchmark."""
    return (
        f"machine: {cpu_model()} ({host_cpu()}), {psutil.cpu_count(logical=False)} physical cores, "
        f"{os.cpu_count()} logical CPUs, Python {platform.python_version()}"
    )


def machine() -> dict[str, object]:
    """Where the figures were measured."""
    versions = {}
    for package in ("framering", "numpy", "numba", "llvmlite", "opencv-python-headless", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "llvm_cpu": host_cpu(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "versions": versions,
    }


def results_stamp(folder: Path) -> str:
    """Make the results folder; the UTC time stamp that names this run's files."""
    folder.mkdir(parents=True, exist_ok=True)
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def report(
    path: Path,
    table: str,
    heading: str,
    targets: list[str],
    notes: list[str],
    data: dict[str, object],
    pictures: list[Path],
    *,
    mode: str,
    started: float,
) -> None:
    """Print a run's table, target verdicts and notes; write them with ``data`` as JSON."""
    print(machine_line())
    print(table)
    print()
    print(heading)
    for line in targets:
        print("  " + line)
    for note in notes:
        print("note: " + note)
    record = {
        "machine": machine(),
        "mode": mode,
        "seconds": time.perf_counter() - started,
        **data,
        "targets": targets,
        "notes": notes,
    }
    path.write_text(json.dumps(record, indent=1, default=float))
    print(f"results: {path}" + "".join(f", {p}" for p in pictures))
