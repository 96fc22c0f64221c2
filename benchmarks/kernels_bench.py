"""Single-thread kernel benchmark on the three reference workloads.

For each workload, in one run: the whole-stack kernel, a memcpy of the same bytes (every layer
byte read once plus the output written once: ``np.copyto`` of a buffer of that many bytes),
cairo (pixman) and Skia where they are installed (``benchmarks/peers.py``), and Pillow's
``Image.alpha_composite`` layer by layer. Each tool is timed in blocks of repetitions
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
from framering.kernels.reference import (
    composite_stack_exact,
    premultiplied_difference,
    stack_errors,
    stack_within_tolerance,
    to_rgba8,
)
from framering.kernels.workloads import WORKLOAD_NAMES, build

from .baselines import pillow
from .peers import cairo, cairo_version, skia, skia_version
from .timing import machine, machine_line, progress_done, timed_blocks

RESULTS = Path(__file__).resolve().parent / "results"


def bench_workload(name: str, quick: bool) -> dict[str, object]:
    print(f"{name}: building layers and the float64 reference ...", file=sys.stderr, flush=True)
    workload = build(name)
    exact = composite_stack_exact(workload.width, workload.height, workload.layers)
    with np.errstate(divide="ignore", invalid="ignore"):
        straight = np.where(exact[..., 3:4] > 0, exact[..., :3] / exact[..., 3:4], 0.0)
    reference = np.concatenate([to_rgba8(straight), to_rgba8(exact[..., 3:4] / 255.0)], axis=2)
    stack = LayerStack.prepare(workload.width, workload.height, workload.layers)
    frame = np.empty((workload.height, workload.width, 4), np.uint8)
    copied_bytes = workload.layer_bytes + workload.frame_bytes
    source = np.ones(copied_bytes, np.uint8)
    target = np.empty_like(source)
    pillow_run, pillow_frame = pillow(workload)
    peers = {name: tool(workload) for name, tool in (("cairo", cairo), ("skia", skia))}
    found = {name: compositor for name, compositor in peers.items() if compositor is not None}

    big = workload.frame_bytes > 10_000_000
    per_block = (2 if big else 10) if quick else (5 if big else 30)
    blocks = 3 if quick else 7
    samples = timed_blocks(
        {
            "kernel": lambda: composite_stack(frame, stack),
            "memcpy": lambda: np.copyto(target, source),
            **{name: compositor[0] for name, compositor in found.items()},
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
    if not stack_within_tolerance(frame, exact):
        raise AssertionError(f"{name}: the kernel's picture is wrong: {stack_errors(frame, exact)}")
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
    record["kernel_stack_errors"] = stack_errors(frame, exact)
    record["pillow_max_error"] = pillow_error
    for name, compositor in found.items():
        # 8-bit premultiplied layers and frames: a few levels off the exact reference
        record[f"{name}_max_error"] = float(
            premultiplied_difference(compositor[1](), reference).max()
        )
        record[f"kernel_x_{name}"] = statistics.median(samples[name]) / statistics.median(
            samples["kernel"]
        )
    return record


# Share of a memcpy of the same bytes, and speed against cairo (pixman), on one thread: the
# targets of the kernels issue ("fast on every x86 server CPU").
TARGETS = {"studio-1080p": 190.0, "sprites-1080p": 125.0, "stress-4k": 80.0}
TARGET_X_CAIRO = 1.3
PEER_COLUMNS = {"cairo": (10, 8), "skia": (9, 7)}  # widths of the fps and ratio columns


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
        f"{'cairo fps':>10}{'x cairo':>8}{'skia fps':>9}{'x skia':>7}"
        f"{'pillow fps':>11}{'x pillow':>9}{'err':>5}"
    )
    print(machine_line())
    missing = "not installed"
    print(f"peers: cairo {cairo_version() or missing}; skia {skia_version() or missing}")
    print(header)
    print("-" * len(header))
    for r in records:
        kernel, memcpy, pillow = r["kernel"], r["memcpy"], r["pillow"]  # type: ignore[index]
        name = str(r["workload"])
        percent = float(r["kernel_percent_of_memcpy"])  # type: ignore[arg-type]
        x_cairo = r.get("kernel_x_cairo")
        met = percent >= TARGETS[name] and (x_cairo is None or x_cairo >= TARGET_X_CAIRO)
        verdict = "ok" if met else "MISS"
        peers = ""
        for peer, (fps_width, x_width) in PEER_COLUMNS.items():
            if peer in r:
                fps = r[peer]["fps"]  # type: ignore[index]
                peers += f"{fps:>{fps_width}.0f}{float(r[f'kernel_x_{peer}']):>{x_width - 1}.2f}x"  # type: ignore[arg-type]
            else:
                peers += f"{'-':>{fps_width}}{'-':>{x_width}}"
        print(
            f"{name:<15}{kernel['fps']:>11.0f}{memcpy['fps']:>11.0f}{percent:>8.0f}%"
            f"{TARGETS[name]:>5.0f}% {verdict:<4}{peers}{pillow['fps']:>9.1f}"
            f"{kernel['fps'] / pillow['fps']:>8.1f}x{r['kernel_max_error']:>5.0f}"
        )
    print(
        f"targets (kernels issue): the share of memcpy above, and >= {TARGET_X_CAIRO}x cairo "
        "where cairo is installed"
    )
    output = args.json or args.json_dir / f"kernels-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"machine": machine(), "results": records}, indent=2))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
