"""Builders that turn a run config's ``probes`` entries into probe objects for a workload.

``RunConfig.probes`` maps a probe name to its options, e.g.
``{"manifold": {"every": 100}, "defect": {"every": 100, "n_samples": 5}}``; the options are
passed to the probe's constructor, and the workload supplies the model, its loss and its
training batches. Probes run in the order given: list ``manifold`` before ``defect`` so that
the defect's projection on the execution subspace uses the basis of the same step
(``{"manifold": {…}, "defect": {"subspace": "manifold"}}``: a probe option naming another probe
of the run is linked to that probe). ``gradient_sed`` reads the monitor's parameters unless
its ``selection`` (a preset name) says otherwise.

``ALARM_BUILDER`` makes the default grokking alarm (:class:`~spectral_edge.detectors.GrokAlarm`)
when a run has the defect probe; keys of the ``defect`` entry that start with ``alarm_`` are
the alarm's options (``{"defect": {"every": 100, "alarm_persistence": 3}}``).
"""

from __future__ import annotations

from typing import Any

from .config import RunConfig
from .runner import ALARM_BUILDER, PROBE_BUILDERS
from .workloads import Workload


def _defect(wl: Workload, cfg: RunConfig, opts: dict[str, Any]) -> Any:
    from ..probes.defect import CommutatorDefectProbe

    size = int(opts.pop("batch_size", 512))
    opts = {k: v for k, v in opts.items() if not k.startswith("alarm_")}
    return CommutatorDefectProbe(model=wl.model, loss_fn=wl.loss, batch_fn=lambda g: wl.sample_batch(g, size),
                                 batch_size=size, seed=cfg.seed, **opts)


def _gradient_sed(wl: Workload, cfg: RunConfig, opts: dict[str, Any]) -> Any:
    from ..probes.gradient_sed import GradientSEDProbe
    from ..selection import Selection

    size = int(opts.pop("batch_size", 512))
    # the monitor's parameters by default, so that the update-SED comparison (compare_updates) can run
    sel = opts.pop("selection", cfg.selection)
    sel = Selection(preset=sel) if isinstance(sel, str) else sel
    return GradientSEDProbe(model=wl.model, loss_fn=wl.loss, batch_fn=lambda g: wl.sample_batch(g, size),
                            batch_size=size, seed=cfg.seed, selection=sel, **opts)


def _manifold(wl: Workload, cfg: RunConfig, opts: dict[str, Any]) -> Any:
    from ..probes.manifold import ExecutionManifoldProbe

    return ExecutionManifoldProbe(wl.model, seed=cfg.seed, **opts)


def _backbone(wl: Workload, cfg: RunConfig, opts: dict[str, Any]) -> Any:
    from ..probes.backbone import BackboneProbe

    return BackboneProbe(wl.model, **opts)


PROBE_BUILDERS.update({"defect": _defect, "gradient_sed": _gradient_sed, "manifold": _manifold,
                       "backbone": _backbone})


def _alarm(cfg: RunConfig, probes: list[Any]) -> Any:
    """The run's grokking alarm: ``cfg.alarm`` names it (True: the default alarm, attached only
    when the probes it reads are present; a name: that alarm, a ConfigError when its probes are
    missing). Options: ``alarm_*`` keys of the defect entry override it, e.g.
    ``{"defect": {"alarm_persistence": 3}}``."""
    from ..detectors.alarm import ALARM_PROBES, DEFAULT_ALARM, make_alarm
    from ..errors import ConfigError

    if cfg.alarm is False:
        return None
    name = DEFAULT_ALARM if cfg.alarm is True else str(cfg.alarm)
    needs = [p for p in ALARM_PROBES[name] if p not in cfg.probes]
    if needs:
        if cfg.alarm is True:
            return None
        raise ConfigError(f"alarm: the {name} alarm reads the {' and '.join(needs)} probe"
                          f"{'s' if len(needs) > 1 else ''}; add {', '.join(f'probes.{n}' for n in needs)} "
                          "(e.g. {\"every\": 100}) or choose another alarm")
    opts = {k[len("alarm_"):]: v for k, v in (cfg.probes.get("defect") or {}).items() if k.startswith("alarm_")}
    return make_alarm(name, **opts)


ALARM_BUILDER.append(_alarm)


def available() -> list[str]:
    """Names usable in ``RunConfig.probes``."""
    return sorted(PROBE_BUILDERS)
