"""Turn a validated buffer address into a Numba array, without a reference count.

Why addresses instead of arrays: a frame is composited from many layers whose buffers live in
different places (numpy arrays, shared-memory segments, read-only or writable). Passing them to
Numba as a typed list costs microseconds per layer to build and makes every read-only/writable
combination a new signature; slicing arrays inside the hot loop costs an atomic reference-count
update per slice. An ``int64`` table of addresses, built once per stack in Python, avoids all
three: inside the kernel each buffer becomes a plain ``uint32`` array that owns nothing.

Safety rests entirely on the caller: the Python side (``validate``) checks dtype, shape,
contiguity and alignment, keeps the owning arrays alive for the duration of the call, and passes
sizes derived from the arrays themselves.
"""

from __future__ import annotations

import platform

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from framering.kernels.jit import KERNEL_INLINE

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _address_to_voidptr(typingctx, address):  # type: ignore[no-untyped-def]
    """Reinterpret an integer address as ``void*`` (an ``inttoptr`` in LLVM)."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@KERNEL_INLINE
def pixels_at(address, count):  # type: ignore[no-untyped-def]
    """A 1-d ``uint32`` array of ``count`` RGBA8 pixels starting at ``address``."""
    return numba.carray(_address_to_voidptr(address), count, np.uint32)


@KERNEL_INLINE
def bytes_at(address, count):  # type: ignore[no-untyped-def]
    """A 1-d ``uint8`` array of ``count`` bytes starting at ``address`` (3-byte pixels, planes)."""
    return numba.carray(_address_to_voidptr(address), count, np.uint8)


@intrinsic
def _prefetch(typingctx, address):  # type: ignore[no-untyped-def]
    """``llvm.prefetch`` (read, keep in all cache levels): a hint that never faults."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0",
        )
        pointer = builder.inttoptr(args[0], byte_pointer)
        builder.call(function, [pointer, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(address), codegen


@KERNEL_INLINE
def prefetch_pixels(address, count):  # type: ignore[no-untyped-def]
    """Ask for ``count`` pixels from ``address`` on to be brought into cache (one hint a line).

    A prefetch never faults, so an address past a buffer's end is harmless.
    """
    for offset in range(0, count * 4, 64):
        _prefetch(address + offset)


@KERNEL_INLINE
def unowned(array):  # type: ignore[no-untyped-def]
    """The same array without its reference count: a view that owns nothing.

    Every array an inlined helper receives is reference-counted on entry and exit, with an
    atomic instruction each; a kernel that hands a dozen tables to a helper per span paid
    more for those than for the pixels (sprites-1080p: a quarter of the frame in
    ``NRT_incref``). The caller must keep ``array`` itself alive while the view is used.
    """
    return numba.carray(_address_to_voidptr(array.ctypes.data), array.shape, array.dtype)


@intrinsic
def _stream_opaque_line(typingctx, dst_address, src_address):  # type: ignore[no-untyped-def]
    """16 pixels from ``src_address`` (any 4-byte alignment) with alpha set to 255, stored to
    ``dst_address`` (64-byte aligned) with a non-temporal store: the line is written without
    being read first, and does not displace what the cache holds."""
    if not isinstance(dst_address, types.Integer) or not isinstance(src_address, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        line = ir.VectorType(i32, 16)
        source = builder.inttoptr(args[1], line.as_pointer())
        target = builder.inttoptr(args[0], line.as_pointer())
        pixels = builder.load(source, align=4)
        opaque = builder.or_(pixels, ir.Constant(line, [ir.Constant(i32, 0xFF000000)] * 16))
        store = builder.store(opaque, target, align=64)
        store.set_metadata("nontemporal", builder.module.add_metadata([i32(1)]))
        return context.get_dummy_value()

    return types.void(dst_address, src_address), codegen


@intrinsic
def _store_fence(typingctx):  # type: ignore[no-untyped-def]
    """Order every non-temporal store before what follows: ``sfence`` on x86 (LLVM's own
    ``fence seq_cst`` would become a locked instruction there, dearer and meant for loads too);
    elsewhere a full fence, which orders them as well."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        if _X86:
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence"
            )
            builder.call(function, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@KERNEL_INLINE
def store_fence():  # type: ignore[no-untyped-def]
    """Make the non-temporal stores before it visible before anything after it: a kernel that
    streamed lines calls it once before it returns (the worker's DONE must not overtake them)."""
    _store_fence()


@KERNEL_INLINE
def stream_opaque_lines(dst_address, src_address, lines):  # type: ignore[no-untyped-def]
    """``lines`` x 16 pixels copied as opaque, ``dst_address`` 64-byte aligned, each line with
    one non-temporal store."""
    for line in range(lines):
        _stream_opaque_line(dst_address + 64 * line, src_address + 64 * line)
