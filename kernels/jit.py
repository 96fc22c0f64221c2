"""The one place that says how framering's pixel kernels are compiled.

Every kernel uses :data:`KERNEL` (or :data:`KERNEL_INLINE`, the same options plus inlining)
so that nobody hard-codes a JIT flag in a hot loop (a test checks this). The choices, and why:

- ``nopython=True``: a kernel that fell back to object mode would be a hundred times slower
  and would hold the GIL.
- ``nogil=True``: a worker's control thread and a composite can run at the same time, and a
  caller may split a frame into row bands on threads of its own.
- ``cache=True``: compiled machine code is written next to the module, so a freshly spawned
  worker loads it instead of spending seconds in LLVM (the engine warms the cache before it
  starts workers, so they never race to write it).
- ``boundscheck=False``: bounds checks cost 1.5x to 13x in these loops. Kernels therefore
  assume valid geometry, and the Python functions in front of them prove it first.
- ``error_model="numpy"``: a float division by zero gives inf/nan instead of raising, which
  keeps the division in the blend loops free of branches so LLVM can vectorise them. The
  kernels never divide by zero anyway (they guard every denominator).
- ``fastmath`` is off on purpose: reassociation would change rounding, and the kernels are
  compared against float64 references to within one unit.
"""

from __future__ import annotations

from typing import Any, Final

import numba

KERNEL_OPTIONS: Final[dict[str, Any]] = {
    "nopython": True,
    "nogil": True,
    "cache": True,
    "boundscheck": False,
    "error_model": "numpy",
    "fastmath": False,
}

#: Decorator for every framering kernel and kernel helper.
KERNEL = numba.jit(**KERNEL_OPTIONS)

#: The same options, plus inlining into the caller at Numba IR level. For the per-span
#: helpers called tens of thousands of times a frame: a call that passes array structs costs
#: ~20 ns of marshalling and status checks, which on sprites-1080p (20,000 spans of 96 pixels)
#: was a quarter of the frame time (0.85 ms -> 0.68 ms once inlined). Not for big functions:
#: every caller compiles its own copy.
KERNEL_INLINE = numba.jit(**KERNEL_OPTIONS, inline="always")
