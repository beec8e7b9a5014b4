"""Counter-based random numbers: every value is a pure function of (seed, key, index).

Sketch entries must be reproducible from a seed, identical on every rank and for every way a
tensor is split into chunks or shards. A sequential generator (``torch.Generator``) cannot
jump to "entry i of parameter p", so we hash instead: ``u = mix64(key + index * φ)`` with
the splitmix64 finaliser, a bijective 64-bit mixer with full avalanche. Nothing here touches
numpy's, Python's or torch's global RNG.

All arithmetic is on ``numpy.uint64`` arrays, where multiplication wraps modulo 2**64 by
definition (torch's int64 overflow is not specified).
"""

from __future__ import annotations

import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_M32 = 1.0 / 4294967296.0


def stable_key(seed: int, *parts: str | int) -> int:
    """A 64-bit key from a seed and labels (parameter name, purpose), stable across processes.

    ``key = blake2b(seed, parts...)[:8]`` (Python's ``hash`` is salted per process, so it
    cannot be used).
    """
    h = hashlib.blake2b(digest_size=8)
    h.update(int(seed).to_bytes(16, "little", signed=True))
    for p in parts:
        h.update(b"\x1f")
        h.update(str(p).encode("utf-8"))
    return int.from_bytes(h.digest(), "little")


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (returns a new array)."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def hash_u64(key: int, start: int, count: int) -> np.ndarray:
    """``h[i] = mix64(key + (start + i)·φ)`` for i in [0, count): shape (count,), uint64."""
    idx = np.arange(start, start + count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64(idx * _GOLDEN + np.uint64(key & 0xFFFFFFFFFFFFFFFF))


def signs(key: int, start: int, count: int) -> np.ndarray:
    """Rademacher ±1 (float64) for indices [start, start+count): shape (count,)."""
    h = hash_u64(key, start, count)
    return 1.0 - 2.0 * (h >> np.uint64(63)).astype(np.float64)


#: normals() works through this many entries at a time, so its temporaries stay in cache
#: (3× faster than whole-array passes at a million entries; the values are the same).
_NORMALS_CHUNK = 1 << 15


def normals(key: int, start: int, count: int) -> np.ndarray:
    """Standard normals for indices [start, start+count) by Box–Muller on the two 32-bit
    halves of each hash: ``z = sqrt(-2 ln u1) cos(2π u2)``. Shape (count,), float64."""
    if count > _NORMALS_CHUNK:
        out = np.empty(count)
        for i in range(0, count, _NORMALS_CHUNK):
            c = min(_NORMALS_CHUNK, count - i)
            out[i : i + c] = _normals(key, start + i, c)
        return out
    return _normals(key, start, count)


def _normals(key: int, start: int, count: int) -> np.ndarray:
    h = hash_u64(key, start, count)
    u1 = ((h >> np.uint64(32)).astype(np.float64) + 0.5) * _TWO_POW_M32  # in (0, 1)
    u2 = (h & np.uint64(0xFFFFFFFF)).astype(np.float64) * _TWO_POW_M32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
