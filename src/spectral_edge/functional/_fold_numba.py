"""The numba source of :mod:`.fold_kernel` (imported only when the kernel is first used).

Compiled lazily for each argument type met (float32, float64, or uint16 holding bfloat16
bits; read-only or not); with ``cache=True`` numba keeps the machine code on disk (in
``__pycache__`` next to this file, or in the user's cache folder when that is read-only):
about 1 s the first time, then ~0.2 s per process to load.
"""

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic, overload


@intrinsic
def _bits_as_float32(typingctx, bits):
    """Reinterpret a uint32 as the float32 with the same bits (an LLVM bitcast)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


def widen(x):  # pragma: no cover - replaced by the overload inside compiled code
    """One stored element as float64 (exact for every input type)."""
    raise NotImplementedError


@overload(widen)
def _widen(x):
    if isinstance(x, types.Integer):  # bfloat16 bits: the high half of a float32
        return lambda x: np.float64(_bits_as_float32(np.uint32(x) << np.uint32(16)))
    return lambda x: np.float64(x)


@numba.njit(nogil=True, cache=True, boundscheck=False)
def fold_rows(X, s, R, z):  # pragma: no cover - compiled
    """``z[j] += R[j] · Σ_r s[r] X[r, j]``: eight rows per pass over z, widened to float64
    in registers (the input is read once and never copied)."""
    n, b = X.shape
    r = 0
    while r + 8 <= n:
        x0, x1, x2, x3 = X[r], X[r + 1], X[r + 2], X[r + 3]
        x4, x5, x6, x7 = X[r + 4], X[r + 5], X[r + 6], X[r + 7]
        s0, s1, s2, s3 = s[r], s[r + 1], s[r + 2], s[r + 3]
        s4, s5, s6, s7 = s[r + 4], s[r + 5], s[r + 6], s[r + 7]
        for j in range(b):
            z[j] += R[j] * (((s0 * widen(x0[j]) + s1 * widen(x1[j])) + (s2 * widen(x2[j]) + s3 * widen(x3[j])))
                            + ((s4 * widen(x4[j]) + s5 * widen(x5[j])) + (s6 * widen(x6[j]) + s7 * widen(x7[j]))))
        r += 8
    while r < n:
        sr = s[r]
        xr = X[r]
        for j in range(b):
            z[j] += R[j] * (sr * widen(xr[j]))
        r += 1
