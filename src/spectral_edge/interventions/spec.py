"""What an intervention is, as plain data: the kinds, the papers' defaults, and the
``[intervention]`` table of a run config (:class:`InterventionSpec`). No torch here.

A TOML run config::

    [intervention]
    kind = "project"            # kick | noise | project | penalty | keep-sed | remove-sed | keep-random | remove-random
    strength = 0.5              # s (project, penalty, keep/remove), ε (noise), α (kick); default: the papers'
    start = 500                 # first optimizer step acted on (default 500; rank-k kinds 0)
    basis_from = "runs/base"    # the baseline run whose execution basis B is used (project, penalty, noise, kick)

The command line has the same keys: ``--intervention``, ``--strength``,
``--intervention-start``, ``--basis-from``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError

#: every kind of intervention (METHODS.md §8)
KINDS = ("kick", "noise", "project", "penalty", "keep-sed", "remove-sed", "keep-random", "remove-random")
#: the kinds that use the execution basis B
NEEDS_BASIS = frozenset({"kick", "noise", "project", "penalty"})
#: the rank-k kinds (a basis of the last gradients, or a random one)
RANK_KINDS = frozenset({"keep-sed", "remove-sed", "keep-random", "remove-random"})
#: where B comes from: a baseline run (``basis_from``), the run's own manifold probe, or random
BASIS_SOURCES = ("run", "online", "random")
#: the command-line flag of a key, for error messages
FLAGS = {"kind": "--intervention", "strength": "--strength", "start": "--intervention-start",
         "basis_from": "--basis-from"}

_PAPERS = {  # strength, start, every, selection (the authors' scripts)
    "kick": (10.0, 500, 1, "all"),
    "noise": (0.1, 500, 50, "all"),
    "project": (0.5, 500, 1, "all"),
    "penalty": (0.5, 500, 10, "all"),
    "keep-sed": (1.0, 0, 1, "attention"),
    "remove-sed": (1.0, 0, 1, "attention"),
    "keep-random": (1.0, 0, 1, "attention"),
    "remove-random": (1.0, 0, 1, "attention"),
}


def kind_defaults(kind: str) -> dict[str, Any]:
    """The papers' strength, start, every and parameter selection of ``kind``."""
    if kind not in _PAPERS:
        raise ConfigError(f"unknown intervention {kind!r}; choose one of {', '.join(KINDS)}")
    s, start, every, sel = _PAPERS[kind]
    return {"strength": s, "start": start, "every": every, "selection": sel}


def key_label(key: str) -> str:
    """``intervention.<key>`` and its flag, as errors name it."""
    flag = FLAGS.get(key)
    return f"intervention.{key}" + (f" ({flag})" if flag else "")


@dataclass(frozen=True)
class InterventionSpec:
    """An ``[intervention]`` table (see module docs); None fields take the papers' value.

    ``basis``: ``run`` (B from ``basis_from``; the default when it is given), ``online`` (B from
    the run's own ``manifold`` probe, refreshed on its schedule) or ``random`` (a random basis
    with the shape of the execution basis: ``n_components`` directions per attention matrix).
    ``n_components``: PCs per matrix of B. ``selection``: the parameters acted on (a preset).
    ``rank``, ``window``: k and W of the rank-k kinds. ``seed``: the intervention's generator
    (None: the run's seed). ``kick_samples``, ``kick_eta``, ``kick_batch_size``: the kick's
    commutator (9 samples, η = 1e-3, batches of 512)."""

    kind: str
    strength: float | None = None
    start: int | None = None
    every: int | None = None
    basis_from: str | None = None
    basis: str | None = None
    n_components: int = 2
    selection: str | None = None
    rank: int = 3
    window: int = 20
    seed: int | None = None
    kick_samples: int = 9
    kick_eta: float = 1e-3
    kick_batch_size: int = 512

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"{key_label('kind')}: unknown intervention {self.kind!r}; choose one of {', '.join(KINDS)}")
        for k in ("strength", "kick_eta"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise ConfigError(f"{key_label(k)}: must be a finite number ≥ 0, got {v!r}")
        for k, low in (("start", 0), ("every", 1), ("n_components", 1), ("rank", 1), ("window", 1), ("seed", 0),
                       ("kick_samples", 1), ("kick_batch_size", 1)):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise ConfigError(f"{key_label(k)}: must be a whole number ≥ {low}, got {v!r}")
        if self.basis is not None and self.basis not in BASIS_SOURCES:
            raise ConfigError(f"{key_label('basis')}: must be one of {', '.join(BASIS_SOURCES)}, got {self.basis!r}")
        if self.selection is not None:
            from ..selection import PRESETS

            if self.selection not in PRESETS:
                raise ConfigError(f"{key_label('selection')}: unknown preset {self.selection!r}; choose one of "
                                  f"{', '.join(PRESETS)}")
        if self.kind in RANK_KINDS:
            if self.basis_from is not None or self.basis is not None:
                raise ConfigError(f"{key_label('basis_from')}: {self.kind} builds its own rank-{self.rank} basis from "
                                  "the gradients; give no basis")
            if self.rank > self.window:
                raise ConfigError(f"intervention.rank: {self.rank} is more than the window of {self.window} gradients")
        else:
            src = self.basis_source
            if src is None:
                raise ConfigError(f"{key_label('basis_from')}: {self.kind} needs the execution basis B: give "
                                  f"--basis-from RUN (a finished baseline run), or basis = \"online\" or \"random\"")
            if src == "run" and self.basis_from is None:
                raise ConfigError(f"{key_label('basis_from')}: basis = \"run\" needs basis_from (--basis-from RUN)")
            if src != "run" and self.basis_from is not None:
                raise ConfigError(f"{key_label('basis_from')}: basis = {src!r} takes no basis_from")
            if self.basis_from is not None and not str(self.basis_from).strip():
                raise ConfigError(f"{key_label('basis_from')}: empty path")

    @property
    def basis_source(self) -> str | None:
        """``run``, ``online``, ``random`` or None (the rank-k kinds)."""
        if self.kind in RANK_KINDS:
            return None
        return self.basis if self.basis is not None else ("run" if self.basis_from is not None else None)

    def resolved(self) -> dict[str, Any]:
        """Every key with the defaults filled in (JSON-safe): what a summary records."""
        d = kind_defaults(self.kind)
        out = asdict(self)
        for k in ("strength", "start", "every", "selection"):
            if out[k] is None:
                out[k] = d[k]
        out["basis"] = self.basis_source
        return out

    def to_dict(self) -> dict[str, Any]:
        """The keys that differ from their defaults (what a config file holds)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name == "kind" or getattr(self, f.name) != f.default}
