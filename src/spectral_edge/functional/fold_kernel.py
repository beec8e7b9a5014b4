"""A fused CPU kernel for the fold sketch (numba, optional): ``z += R ⊙ (sᵀ X)``.

``X`` is the (rows, B) view of a tensor, ``s`` the ±1 chunk signs, ``R`` the tensor's ±1
bucket signs and ``z`` the float64 accumulator. Without this kernel, torch cannot multiply a
float32 matrix into a float64 result, so each block is first copied to float64 and then
multiplied: X is read once from memory, but written and read again at twice its size. The
kernel reads each element once, widens it in a register and accumulates in float64, eight
rows per pass over z (``benchmarks/bench_sketch_speed.py``: 1.6× a plain read pass at 124M
parameters, against 2.9× for the torch path).

Numbers: float64 accumulation as in the torch path, only the order of the additions
differs (the two agree to ~1e-15 relative; ``tests/test_fold_kernel.py``).

Threads: large inputs are split by rows over ``torch.get_num_threads()`` threads of our
own pool (numba kernels release the GIL), each into its own partial sum, so no threading
layer or global numba setting is touched, and a forked child builds its own pool.

Used when ``numba`` is installed (``pip install 'spectral-edge[fast]'``) and the input is a
CPU float32, float64 or bfloat16 tensor of at least ``MIN_ELEMS`` elements.
``SPECTRAL_EDGE_FOLD_KERNEL=torch`` turns it off; ``=numba`` makes its absence an error.
"""

from __future__ import annotations

import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import ConfigError

ENV = "SPECTRAL_EDGE_FOLD_KERNEL"
#: Inputs smaller than this many elements run on the calling thread (a thread hand-off
#: costs tens of microseconds; this much data takes about a hundred).
PARALLEL_MIN_ELEMS = 1 << 18

#: Smaller tensors take the torch path: the kernel gains little there, and a model without
#: any larger tensor never pays the ~0.5 s of loading numba.
MIN_ELEMS = 1 << 17

_lock = threading.Lock()
_kernel: Any = None  # the compiled function once loaded, False if numba is unavailable
_why = [""]  # why it is unavailable
_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)


def _compile() -> Any:
    from ._fold_numba import fold_rows  # imports numba

    # compile (or load) the common case now, on one thread, before any pool thread calls it
    ro = np.ones(1)
    ro.flags.writeable = False
    fold_rows(np.zeros((1, 1), np.float32), ro, ro, np.zeros(1))
    return fold_rows


def mode() -> str:
    """The requested kernel: ``auto`` (default), ``numba`` or ``torch``."""
    m = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if m not in ("auto", "numba", "torch"):
        raise ConfigError(f"{ENV} must be 'auto', 'numba' or 'torch', got {m!r}")
    return m


def kernel() -> Any:
    """The compiled kernel, or None when it is off or numba is not installed."""
    global _kernel
    m = mode()
    if m == "torch":
        return None
    if _kernel is None:
        with _lock:
            if _kernel is None:
                try:
                    _kernel = _compile()
                except ImportError:
                    _kernel, _why[0] = False, "numba is not installed (pip install 'spectral-edge[fast]')"
                except Exception as e:  # noqa: BLE001 - e.g. no writable cache folder, an LLVM failure
                    _kernel, _why[0] = False, f"the numba kernel failed to load ({type(e).__name__}: {e})"
                    warnings.warn(f"spectral-edge: {_why[0]}; the fold sketch uses the slower torch path",
                                  RuntimeWarning, stacklevel=2)
    if _kernel is False and m == "numba":
        raise ConfigError(f"{ENV}=numba but {_why[0]}")
    return _kernel or None


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    pid = os.getpid()
    if _pool is None or _pool[0] != pid or _pool[1] != workers:
        if _pool is not None and _pool[0] == pid:  # the thread count changed: retire the old pool
            _pool[2].shutdown(wait=False)
        _pool = (pid, workers, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spectral-edge-fold"))
    return _pool[2]


def _readonly(a: np.ndarray) -> np.ndarray:
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def fold_rows(X: np.ndarray, s: np.ndarray, R: np.ndarray, z: np.ndarray, threads: int = 1) -> None:
    """``z[j] += R[j] · Σ_r s[r] X[r, j]`` in float64. X: (rows, b) C-contiguous float32,
    float64, or uint16 holding bfloat16 bits; s: (rows,) and R: (b,) float64 (±1); z: (b,)
    float64, C-contiguous. Requires :func:`kernel` to be available."""
    k = kernel()
    if k is None:
        raise ConfigError("the numba fold kernel is not available")
    s, R = _readonly(s), _readonly(R)
    rows = X.shape[0]
    parts = min(max(1, int(threads)), rows // 8 or 1)
    if parts == 1 or X.size < PARALLEL_MIN_ELEMS:
        k(X, s, R, z)
        return
    cuts = [rows * i // parts for i in range(parts + 1)]
    partial = np.zeros((parts - 1, z.shape[0]))
    pool = _executor(parts - 1)
    futs = [pool.submit(k, X[cuts[i]:cuts[i + 1]], s[cuts[i]:cuts[i + 1]], R, partial[i - 1])
            for i in range(1, parts)]
    k(X[: cuts[1]], s[: cuts[1]], R, z)  # the first part on this thread
    for f in futs:
        f.result()
    z += partial.sum(axis=0)


__all__ = ["ENV", "fold_rows", "kernel", "mode"]
