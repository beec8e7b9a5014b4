"""The numba source of :mod:`.fold_kernel` (imported only when the kernel is first used).

Compiled lazily for each argument type met (float32/float64, read-only or not); with
``cache=True`` numba keeps the machine code on disk (in ``__pycache__`` next to this file,
or in the user's cache folder when that is read-only): about 1 s the first time, then
~0.2 s per process to load.
"""

import numba


@numba.njit(nogil=True, cache=True, boundscheck=False)
def fold_rows(X, s, R, z):  # pragma: no cover - compiled
    """``z[j] += R[j] · Σ_r s[r] X[r, j]``: eight rows per pass over z, widened to float64
    in registers (the float32 input is read once and never copied)."""
    n, b = X.shape
    r = 0
    while r + 8 <= n:
        x0, x1, x2, x3 = X[r], X[r + 1], X[r + 2], X[r + 3]
        x4, x5, x6, x7 = X[r + 4], X[r + 5], X[r + 6], X[r + 7]
        s0, s1, s2, s3 = s[r], s[r + 1], s[r + 2], s[r + 3]
        s4, s5, s6, s7 = s[r + 4], s[r + 5], s[r + 6], s[r + 7]
        for j in range(b):
            z[j] += R[j] * (((s0 * x0[j] + s1 * x1[j]) + (s2 * x2[j] + s3 * x3[j]))
                            + ((s4 * x4[j] + s5 * x5[j]) + (s6 * x6[j] + s7 * x7[j])))
        r += 8
    while r < n:
        sr = s[r]
        xr = X[r]
        for j in range(b):
            z[j] += R[j] * (sr * xr[j])
        r += 1
