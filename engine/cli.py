"""The ``framering`` command."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from kernels import LayerStack, composite_stack, warmup
from kernels.workloads import WORKLOAD_NAMES, build


def _demo(args: argparse.Namespace) -> int:
    """Composite a reference scene with the kernels and write it as a PNG."""
    print(f"building the {args.scene} reference scene ...", flush=True)
    workload = build(args.scene)
    print(f"compiling kernels (cached after the first run): {warmup():.2f} s", flush=True)
    stack = LayerStack.prepare(workload.width, workload.height, workload.layers)
    frame = np.empty((workload.height, workload.width, 4), np.uint8)
    times = []
    for _ in range(args.frames):
        started = time.perf_counter()
        composite_stack(frame, stack)
        times.append(time.perf_counter() - started)
    median = float(np.median(times))
    output = Path(args.output)
    if not cv2.imwrite(str(output), cv2.cvtColor(frame, cv2.COLOR_RGBA2BGRA)):
        print(f"error: could not write {output}", file=sys.stderr)
        return 1
    print(
        f"{workload.name}: {len(workload.layers)} layers, {workload.width}x{workload.height}, "
        f"median {median * 1e3:.2f} ms per frame ({1 / median:.0f} fps on one thread) "
        f"over {args.frames} frames; wrote {output}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framering", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="composite a reference scene and write a PNG")
    demo.add_argument("--scene", choices=WORKLOAD_NAMES, default="studio-1080p")
    demo.add_argument("--frames", type=int, default=60, help="frames to composite (timing)")
    demo.add_argument("--output", default="framering-demo.png", help="PNG to write")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))
