"""Which layer rows get software prefetch hints: a per-CPU choice, measured.

The whole-stack kernel reads each layer's row in turn, row after row; on a stack of several
full-frame layers (stress-4k: six 4K layers, 200 MB a frame) the hardware prefetcher of the
CPU it was written on did not follow, and hints for the same span a couple of rows ahead
took stress-4k from 31 ms to 15.5 ms a frame (``docs/kernels.md``). On AMD EPYC Zen 3
(``znver3``), whose prefetchers follow the streams themselves, the hints only cost
instructions. Without them (2026-12-04, blocks alternated in one process, ratio of the minima):
stress-4k 1.055x faster with the same compiled kernel and only ``prefetch_min`` switched, 1.22x
and 1.23x with two such processes at once (both cores busy, as two workers), 1.17x and 1.29x
in two runs of the kernel before and after; studio-1080p 1.01x-1.13x.

So hints are on by default, for layers at least :data:`DEFAULT_MIN_PIXELS` wide, and off on
the CPUs in :data:`MEASURED_LOSSES`, named as LLVM names them (``cpu.host_cpu``).
``FRAMERING_PREFETCH=off`` turns them off anywhere, ``on`` (or a minimum width in pixels)
turns them on. The choice is a kernel argument, not a compiled constant, so Numba's cache
holds for every setting, and the engine's workers inherit the variable with the environment.
"""

from __future__ import annotations

import functools
import os
from typing import Final

from framering.kernels.cpu import host_cpu, pixels_setting

ENVIRONMENT: Final = "FRAMERING_PREFETCH"
DEFAULT_MIN_PIXELS: Final = 256
# LLVM host CPU names where the hints were measured to lose.
MEASURED_LOSSES: Final = frozenset({"znver3"})


def choose(setting: str, cpu: str) -> int:
    """The narrowest layer (pixels) whose rows get hints (0: none) for ``setting`` (the
    environment variable's value, ``"auto"`` by default) on the CPU LLVM calls ``cpu``."""
    return pixels_setting(
        setting,
        variable=ENVIRONMENT,
        auto=0 if cpu in MEASURED_LOSSES else DEFAULT_MIN_PIXELS,
        on=DEFAULT_MIN_PIXELS,
        smallest=0,
        number="a layer width in pixels",
    )


def check_prefetch_min(value: object) -> int:
    """A narrowest prefetched layer a caller gives: 0 (never) or a positive width."""
    if type(value) is not int or value < 0:
        raise ValueError(f"prefetch_min must be an int of at least 0, not {value!r}")
    return value


@functools.cache
def prefetch_min_pixels() -> int:
    """This process's choice (read once)."""
    return choose(os.environ.get(ENVIRONMENT, "auto"), host_cpu())
