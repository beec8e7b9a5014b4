"""Interventions: steer training along or against its spectral geometry (METHODS.md §8).

- :mod:`.transforms`: pure math on flat vectors (remove or keep a span, orthogonal unit
  directions, rank-k SED bases, random orthonormal bases);
- :mod:`.bases`: orthonormal bases over named parameters (the execution basis of a baseline
  run, online from the manifold probe, random with the same shape);
- :mod:`.spec`: the kinds, the papers' defaults, and a run config's ``[intervention]`` table;
- :mod:`.hooks`: the :class:`Intervention`, installed on any optimizer by a step pre-hook.

::

    from spectral_edge.interventions import Intervention, basis_from_run

    iv = Intervention(model, "project", basis=basis_from_run("runs/baseline"), strength=0.5).attach(optimizer)

Stage: after ``probes`` (it uses the commutator defect and the manifold probe's basis), before
``experiments`` (the runner installs one from a config). Importing the package imports none of
its modules (PEP 562).
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__, __getattr__, __dir__ = lazy_attributes(__name__, {
    "spec": ("KINDS", "InterventionSpec", "kind_defaults"),
    "bases": ("Basis", "basis_from_run", "basis_from_blocks", "execution_basis", "random_basis"),
    "hooks": ("Intervention",),
}, submodules=("transforms", "bases", "spec", "hooks"))
