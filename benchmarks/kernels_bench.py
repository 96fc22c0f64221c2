"""Single-thread kernel benchmark on the three reference workloads.

For each workload, in one run: the whole-stack kernel, a memcpy of the same bytes (every layer
byte read once plus the output written once: ``np.copyto`` of a buffer of that many bytes) and
Pillow's ``Image.alpha_composite`` layer by layer. Each tool is timed in blocks of repetitions
after a warm-up, blocks of the tools alternating so that drift of a noisy machine hits all of
them alike; figures are medians, and the ratio kernel/memcpy is the one that matters.
Every picture is checked against the float64 reference first, so no figure comes from a wrong
frame.

    python -m benchmarks.kernels_bench [--quick] [--workload NAME ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from framering import kernels
from framering.kernels import LayerStack, composite_stack
from framering.kernels.reference import composite_stack_reference, premultiplied_difference
from framering.kernels.workloads import WORKLOAD_NAMES, build

from .baselines import pillow
from .timing import machine, machine_line, progress_done, timed_blocks

RESULTS = Path(__file__).resolve().parent / "results"


def bench_workload(name: str, quick: bool) -> dict[str, object]:
    print(f"{name}: building layers and the float64 reference ...", file=sys.stderr, flush=True)
    workload = build(name)
    reference = composite_stack_reference(workload.width, workload.height, workload.layers)
    stack = LayerStack.prepare(workload.width, workload.height, workload.layers)
    frame = np.empty((workload.height, workload.width, 4), np.uint8)
    copied_bytes = workload.layer_bytes + workload.frame_bytes
    source = np.ones(copied_bytes, np.uint8)
    target = np.empty_like(source)
    pillow_run, pillow_frame = pillow(workload)

    big = workload.frame_bytes > 10_000_000
    per_block = (2 if big else 10) if quick else (5 if big else 30)
    blocks = 3 if quick else 7
    samples = timed_blocks(
        {
            "kernel": lambda: composite_stack(frame, stack),
            "memcpy": lambda: np.copyto(target, source),
        },
        blocks,
        per_block,
        name,
    )
    pillow_samples = timed_blocks(
        {"pillow": pillow_run}, 1 if quick else 3, 2 if big else 5, "pillow"
    )
    progress_done()
    samples.update(pillow_samples)

    kernel_error = float(premultiplied_difference(frame, reference).max())
    pillow_error = float(premultiplied_difference(pillow_frame(), reference).max())
    record: dict[str, object] = {"workload": name, "bytes_copied_by_memcpy": copied_bytes}
    for tool, values in samples.items():
        record[tool] = {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "max_s": max(values),
            "repetitions": len(values),
            "fps": 1.0 / statistics.median(values),
        }
    record["kernel_percent_of_memcpy"] = (
        100.0 * statistics.median(samples["memcpy"]) / statistics.median(samples["kernel"])
    )
    record["kernel_max_error"] = kernel_error
    record["pillow_max_error"] = pillow_error
    return record


TARGETS = {"studio-1080p": 150.0, "sprites-1080p": 100.0, "stress-4k": 70.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (~30 s)")
    parser.add_argument("--workload", action="append", choices=WORKLOAD_NAMES)
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument("--json-dir", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    print(f"compiling kernels: {kernels.warmup():.2f} s", file=sys.stderr)
    records = [bench_workload(name, args.quick) for name in args.workload or WORKLOAD_NAMES]

    header = (
        f"{'workload':<15}{'kernel fps':>11}{'memcpy fps':>11}{'% memcpy':>9}{'target':>8}"
        f"{'pillow fps':>11}{'x pillow':>9}{'err':>5}"
    )
    print(machine_line())
    print(header)
    print("-" * len(header))
    for r in records:
        kernel, memcpy, pillow = r["kernel"], r["memcpy"], r["pillow"]  # type: ignore[index]
        name = str(r["workload"])
        percent = float(r["kernel_percent_of_memcpy"])  # type: ignore[arg-type]
        verdict = "ok" if percent >= TARGETS[name] else "MISS"
        print(
            f"{name:<15}{kernel['fps']:>11.0f}{memcpy['fps']:>11.0f}{percent:>8.0f}%"
            f"{TARGETS[name]:>5.0f}% {verdict:<2}{pillow['fps']:>10.1f}"
            f"{kernel['fps'] / pillow['fps']:>8.1f}x{r['kernel_max_error']:>5.0f}"
        )
    output = args.json or args.json_dir / f"kernels-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"machine": machine(), "results": records}, indent=2))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
