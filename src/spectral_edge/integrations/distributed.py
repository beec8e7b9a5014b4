"""Sketching parameters that live on several processes (``torch.distributed``).

The protocol (every sketch family is linear and split-invariant, so per-rank sketches of
disjoint pieces at their GLOBAL flat offsets sum, with ONE all-reduce of ``groups × d``
float64 numbers per sample, to the full sketch) and the shard arithmetic live in
:mod:`spectral_edge.stream.sharding`; this module re-exports its public names. They take a
:class:`~spectral_edge.stream.analyzer.TrajectoryAnalyzer`; for a Monitor's streams pass
``monitor.updates`` (or ``monitor.grads`` for the gradient stream).

:class:`~spectral_edge.monitor.Monitor` follows this protocol with ``distributed="sharded"``
(the default ``"auto"`` picks it when a parameter is a DTensor); plain, non-DTensor
parameters then count as replicated and are sketched on rank 0. Build the Monitor on every
rank AFTER ``fully_shard`` (it keeps references to the sharded parameters) and step it on
every rank. ``monitor.bytes_communicated`` counts what it all-reduced, e.g. 96 bytes per
sample for fold with d = 12 and one group. For replicated data parallelism (DDP) nothing is
communicated: only rank 0 sketches and records; the other ranks skip the work entirely.

For hand-sharded models, build a :class:`~spectral_edge.stream.analyzer.TrajectoryAnalyzer`
with the GLOBAL shapes on every rank and call :func:`push_sharded` (or :func:`sketch_sharded`)
with this rank's pieces at each sample::

    an = TrajectoryAnalyzer(AnalysisConfig(windows=(10,)), {name: (global_shape, dtype), ...})
    local, off = flat_shard(full, rank, world)   # or the slices this rank already holds
    rows = push_sharded(an, step, [(name, local, off), ...])     # same rows on every rank

Everything here imports without a process group; only :func:`allreduce_sketches` and the
functions that call it need one.

Known torch issue (not ours): with torch 2.13, a CPU process that used gloo with DTensors
(``fully_shard`` or ``distribute_tensor``) can abort at interpreter exit with "terminate
called without an active exception", even after ``destroy_process_group`` has returned —
measured in 2 of 40 runs of a 25-line FSDP2 script that does not use spectral_edge, and in
4 of 20 runs of the sharded case of ``benchmarks/bench_monitor_overhead.py``. The work and the files are complete by then; if the exit status matters (a
test, a scheduler), write your outputs, call ``destroy_process_group()`` and leave with
``os._exit(0)``, as this project's tests and benchmarks do.
"""

from __future__ import annotations

from ..stream.sharding import *  # noqa: F401,F403  (the public names, re-exported)
from ..stream.sharding import __all__  # noqa: F401
