"""Non-temporal ("streaming") stores for the CPU kernels. Private: jitted helpers only.

A plain store first reads the cache line it writes (read for ownership), so writing a large float32
output costs twice its size in memory traffic and evicts the cache. A non-temporal store writes the
line straight to memory: on a 1920x1080x3 float32 output (25 MB) a converting copy runs 1.5x faster
on 2 threads (2.1 ms against 3.1 ms for plain stores, 3.0 ms for ``np.copyto``). Inside the filter
kernels, though, the extra pass through the tile cost more than it saved on the machine measured, so
``cpu.STREAM_BYTES`` keeps it off; the tests run it at every alignment.

The kernels compute a tile of an output row into a small buffer (it stays in L1) and hand it to
:func:`copy_out`, which streams the 32-byte-aligned middle and stores the ends plainly; :func:`fence`
orders the streamed stores before the kernel returns to the thread that waits for it.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types, uint64
from numba.extending import intrinsic

X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
LANES = 8  # float32 per streamed store (32 bytes)


@intrinsic
def _store_lanes(typingctx, dst, d, src, s):  # pragma: no cover - compiled by Numba
    """dst[d: d + LANES] = src[s: s + LANES] as one non-temporal store (dst + d 32-byte aligned)."""
    def codegen(context, builder, signature, args):
        target = context.make_array(signature.args[0])(context, builder, args[0])
        source = context.make_array(signature.args[2])(context, builder, args[2])
        vector = ir.VectorType(ir.FloatType(), LANES)
        value = builder.load(builder.bitcast(builder.gep(source.data, [args[3]]), vector.as_pointer()), align=4)
        store = builder.store(value, builder.bitcast(builder.gep(target.data, [args[1]]), vector.as_pointer()),
                              align=4 * LANES)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.void(dst, d, src, s), codegen


@intrinsic
def _misalignment(typingctx, array, i):  # pragma: no cover - compiled by Numba
    """The address of ``array[i]`` modulo 32 bytes."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        address = builder.ptrtoint(builder.gep(data, [args[1]]), ir.IntType(64))
        return builder.and_(address, ir.Constant(ir.IntType(64), 4 * LANES - 1))

    return types.uint64(array, i), codegen


@intrinsic
def _fence(typingctx):  # pragma: no cover - compiled by Numba
    def codegen(context, builder, signature, args):
        if X86:
            sfence = builder.module.declare_intrinsic("llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), []))
            builder.call(sfence, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@njit(cache=True, nogil=True)
def copy_out(tile, dst, d0, n):  # pragma: no cover - jitted
    """dst[d0: d0 + n] = tile[:n] (float32), streaming every aligned 32-byte block."""
    base, count, i = uint64(d0), uint64(n), uint64(0)
    while i < count and _misalignment(dst, base + i) != 0:
        dst[base + i] = tile[i]
        i += uint64(1)
    while i + uint64(LANES) <= count:
        _store_lanes(dst, base + i, tile, i)
        i += uint64(LANES)
    while i < count:
        dst[base + i] = tile[i]
        i += uint64(1)


@njit(cache=True, nogil=True)
def fence():  # pragma: no cover - jitted
    """Order this thread's streamed stores before what follows (the wait of the thread that started it)."""
    _fence()
