"""``fma32(a, b, c)``: ``a * b + c`` in float32, rounded once (LLVM's ``llvm.fma``).

Numba has no fused multiply-add of its own (``math.fma`` arrived in Python 3.13, and Numba
does not compile it), and with ``fastmath`` off, as every framering kernel has it, LLVM never
fuses a multiply and an add by itself. This intrinsic asks for the fused operation by name.

Why it is worth a module: the accumulator's source-over is ``c + a (Cs - c)`` per channel,
and fused it is one instruction instead of two. On the x86 servers framering runs on (every
one since Haswell and Zen has FMA) LLVM emits ``vfmadd`` on whole vectors.

The result is the exact ``a * b + c`` rounded once to float32, the same bits on every CPU
(IEEE 754 defines it; where a CPU had no FMA, LLVM would call the C library's ``fmaf``, which
is exact too, only slow). It is more accurate than a multiply then an add, and what matters
for byte-identical frames is that every loop that computes a formula computes it with the
same operations, which ``framering.kernels.accumulate`` does by calling one helper.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

_F32 = ir.FloatType()
_FMA_TYPE = ir.FunctionType(_F32, [_F32, _F32, _F32])


@intrinsic
def fma32(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` with one rounding; the arguments are converted to float32 first."""
    signature = types.float32(types.float32, types.float32, types.float32)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        function = builder.module.declare_intrinsic("llvm.fma", [_F32], _FMA_TYPE)
        return builder.call(function, args)

    return signature, codegen
