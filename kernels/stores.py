"""Which opaque copies are written with non-temporal stores: a per-CPU choice, measured.

An ordinary store first reads the cache line it overwrites (a read for ownership), and keeps
the line in the cache afterwards. A frame in a ring of slots is written once and read much
later (by the encoder, or not at all), so both are waste: the read costs memory bandwidth, and
the kept lines push the layers' pixels, which the next frame reads again, out of the cache. A
non-temporal store writes a whole 64-byte line straight to memory.

The kernels stream only long opaque runs (the background between overlays), only when nothing
reads the rows back right away (no delivery conversion in the same pass), and finish with a
fence. Short runs stay ordinary: between many small sprites, lines written half one way and
half the other cost more than they save.

Measured (docs/performance.md; the same compiled code with the argument switched, blocks
alternated in one process): on AMD EPYC Zen 5, streaming runs of 512 pixels or more made
studio-1080p in-process 1.21x-1.29x faster on one thread and 1.12x-1.22x on two (into 7
frames in rotation; 1.24x-1.29x into one frame), sprites-1080p 0.98x-1.13x; from 1024 on it
misses most of studio's background (1.03x-1.06x), and from 128 or 256 on, sprites lost 2-14%.
On Zen 3 (2026-12-04, the same kernel with 0 and 512, blocks alternated in one process, ratio
of the minima, two runs): studio-1080p 1.26x and 1.35x, sprites-1080p 1.01x, stress-4k 0.99x.
Elsewhere it has not been measured, so it is off: ``FRAMERING_STREAM_STORES=on`` (or a
minimum run in pixels, 64 or more) turns it on, ``off`` turns it off anywhere. The choice is a
kernel argument, not a compiled constant, so Numba's cache holds for every setting, and the
engine's workers inherit the variable with the environment.
"""

from __future__ import annotations

import functools
import os
from typing import Final

from framering.kernels.cpu import host_cpu, pixels_setting

ENVIRONMENT: Final = "FRAMERING_STREAM_STORES"
DEFAULT_MIN_PIXELS: Final = 512
SMALLEST_MIN_PIXELS: Final = 64
# LLVM's names of the CPUs it was measured to win on (``cpu.host_cpu``; AMD's family 25 is
# both Zen 3 and Zen 4, so the family number would not tell them apart).
MEASURED_WINS: Final = frozenset({"znver3", "znver5"})


def choose(setting: str, cpu: str) -> int:
    """The shortest opaque run to stream (0: none) for ``setting`` (the environment variable's
    value, ``"auto"`` by default) on the CPU LLVM calls ``cpu``."""
    return pixels_setting(
        setting,
        variable=ENVIRONMENT,
        auto=DEFAULT_MIN_PIXELS if cpu in MEASURED_WINS else 0,
        on=DEFAULT_MIN_PIXELS,
        smallest=SMALLEST_MIN_PIXELS,
        number=f"a run length of at least {SMALLEST_MIN_PIXELS} pixels",
    )


def check_stream_min(value: object) -> int:
    """A shortest streamed run a caller gives: 0, or at least :data:`SMALLEST_MIN_PIXELS` (the
    kernel's split into a head, whole lines and a tail assumes the run is longer than a line)."""
    if type(value) is not int or not (value == 0 or value >= SMALLEST_MIN_PIXELS):
        raise ValueError(
            f"stream_min must be 0 or an int of at least {SMALLEST_MIN_PIXELS}, not {value!r}"
        )
    return value


@functools.cache
def stream_min_pixels() -> int:
    """This process's choice (read once)."""
    return choose(os.environ.get(ENVIRONMENT, "auto"), host_cpu())
