"""The ``framering`` command: the live demo, and shared-memory housekeeping."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from framering.demo import run_demo
from framering.shm import list_segments, orphaned_segments, reclaim_orphans


def _show_log(verbosity: int) -> None:
    """``-v``: the engine's events (workers, crashes, resizes, stalls) on stderr; ``-vv``:
    its debug messages too."""
    if verbosity:
        logging.basicConfig(
            level=logging.INFO if verbosity == 1 else logging.DEBUG,
            format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
            stream=sys.stderr,
        )


def _demo(args: argparse.Namespace) -> int:
    _show_log(args.verbose)
    result = run_demo(
        fps=args.fps,
        seconds=args.seconds,
        workers=args.workers,
        slots=args.slots,
        png=Path(args.png),
        output=Path(args.output) if args.output else None,
        input=Path(args.input) if args.input else None,
        contact_sheet_png=Path(args.contact_sheet) if args.contact_sheet else None,
        use_pyav=False if args.no_pyav else None,
    )
    source = f"{args.input} under the show's overlays" if args.input else "the studio show live"
    print(
        f"{source}: {result.frames} frames in {result.seconds:.1f} s "
        f"({result.frames / result.seconds:.1f} fps), latency p50 "
        f"{result.latency_p50 * 1e3:.2f} ms p99 {result.latency_p99 * 1e3:.2f} ms, "
        f"{result.late} late, {result.dropped} dropped, delivery jitter p99 "
        f"{result.jitter_p99 * 1e3:.1f} ms; last frame in {result.png}"
        + (f", video in {result.output} ({result.encoder})" if result.output else "")
        + (f", contact sheet in {result.contact_sheet}" if result.contact_sheet else "")
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    # Imported here, not at the top: the benchmarks need the optional 'bench' extra
    # (Pillow, matplotlib), and `framering demo` must work without it.
    try:
        from framering.benchmarks import (
            cluster_bench,
            damage_bench,
            engine_bench,
            formats_bench,
            kernels_bench,
            streams_bench,
        )
    except ImportError as error:
        print(f"framering bench needs: pip install 'framering[bench]' ({error})")
        return 2
    argv = ["--workers", str(args.workers)] if args.workers else []
    argv += ["--out", args.out]
    if args.kernels:
        return kernels_bench.main(([] if args.full else ["--quick"]) + ["--json-dir", args.out])
    if args.formats:
        return formats_bench.main(
            ["--out", args.out]
            + (["--full"] if args.full else [])
            + (["--smoke"] if args.smoke else [])
        )
    argv += (["--full"] if args.full else []) + (["--smoke"] if args.smoke else [])
    if args.damage:
        return damage_bench.main(argv)
    if args.streams:
        return streams_bench.main(argv)
    if args.cluster:  # each simulated node runs one worker: --workers does not apply
        return cluster_bench.main(argv[argv.index("--out") :])
    return engine_bench.main(argv)


def _cleanup(args: argparse.Namespace) -> int:
    """Unlink segments left by engines whose process died (never one whose owner lives)."""
    orphans = orphaned_segments() if args.dry_run else reclaim_orphans()
    verb = "would remove" if args.dry_run else "removed"
    for name in orphans:
        print(f"{verb} /dev/shm/{name}")
    alive = len(list_segments()) - (len(orphans) if args.dry_run else 0)
    print(f"{verb} {len(orphans)} orphaned segment(s); {alive} in use by live engines")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framering", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="composite a designed studio show live through the engine"
    )
    demo.add_argument("--fps", type=float, default=None, help="frame rate (60, or the clip's)")
    demo.add_argument("--seconds", type=float, default=5.0, help="how long to run (default 5)")
    demo.add_argument("--workers", type=int, default=None, help="default: physical cores")
    demo.add_argument("--slots", type=int, default=8, help="frame slots in the ring")
    demo.add_argument("--input", default=None, help="a video clip to composite under overlays")
    demo.add_argument(
        "--output", default=None, help="write the run to this file (H.264 .mp4 with PyAV)"
    )
    demo.add_argument(
        "--contact-sheet", default=None, help="PNG grid of frames spread over the run"
    )
    demo.add_argument("--no-pyav", action="store_true", help="encode and decode with OpenCV")
    demo.add_argument("--png", default="framering-demo.png", help="PNG of the last frame")
    demo.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the engine's log on stderr (-vv: debug messages too)",
    )
    demo.set_defaults(run=_demo)
    bench = commands.add_parser(
        "bench", help="measure throughput, latency and scaling beside numpy, OpenCV, Pillow, ..."
    )
    bench.add_argument("--full", action="store_true", help="every workload, longer (minutes)")
    bench.add_argument("--workers", type=int, default=None, help="default: physical cores")
    bench.add_argument("--out", default="benchmarks/results", help="results folder")
    bench.add_argument("--kernels", action="store_true", help="the single-thread kernel bench")
    bench.add_argument(
        "--formats",
        action="store_true",
        help="cost of delivery formats, input formats and transforms per 1080p frame",
    )
    bench.add_argument(
        "--damage",
        action="store_true",
        help="damage tracking on and off (animated, still, everything moving) and the parent's CPU",
    )
    bench.add_argument(
        "--streams",
        action="store_true",
        help="paced 30 fps streams beside a greedy one, and bands against whole 4K frames",
    )
    bench.add_argument(
        "--cluster",
        action="store_true",
        help="streams on a simulated Ray cluster: the driver's cost, failover (needs [cluster])",
    )
    bench.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # for tests
    bench.set_defaults(run=_bench)
    cleanup = commands.add_parser(
        "cleanup", help="remove shared memory left by engines whose process was killed"
    )
    cleanup.add_argument("--dry-run", action="store_true", help="only list what would go")
    cleanup.set_defaults(run=_cleanup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))
