"""The CPU the kernels are compiled for, and how a per-CPU setting is read.

Some choices win on one CPU and lose on another (non-temporal stores, ``stores.py``; prefetch
hints, ``hints.py``). Each is measured, keyed on LLVM's name for the CPU, and can be
overridden by an environment variable that every such setting reads the same way.
"""

from __future__ import annotations


def host_cpu() -> str:
    """The CPU the kernels are compiled for, as LLVM names it ("znver3", "sapphirerapids"):
    ``NUMBA_CPU_NAME`` if set, else the host's. Per-CPU choices key on this name, which is
    also part of Numba's cache key, rather than on the model name, which in a VM often says
    only "AMD EPYC" for three generations that differ in vector width and prefetchers (and
    rather than AMD's family number: family 25 is both Zen 3 and Zen 4)."""
    import llvmlite.binding
    from numba.core import config

    return str(config.CPU_NAME or llvmlite.binding.get_host_cpu_name())


def pixels_setting(
    setting: str, *, variable: str, auto: int, on: int, smallest: int, number: str
) -> int:
    """A size in pixels from the text of environment variable ``variable``: ``auto`` (or
    nothing) gives ``auto``, this CPU's measured choice; ``off`` (``0``, ``no``, ``false``)
    gives 0; ``on`` (``yes``, ``true``) gives ``on``; a whole number of at least ``smallest``
    gives itself. Anything else is refused, saying what it may be (``number`` describes the
    number)."""
    setting = setting.strip().lower()
    if setting in ("", "auto"):
        return auto
    if setting in ("off", "0", "no", "false"):
        return 0
    if setting in ("on", "yes", "true"):
        return on
    if setting.isdigit() and int(setting) >= smallest:
        return int(setting)
    raise ValueError(f"{variable} must be auto, on, off or {number}, not {setting!r}")
