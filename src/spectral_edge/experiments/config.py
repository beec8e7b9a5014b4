"""Declarative experiment configuration: one dataclass, loadable from JSON or TOML.

A :class:`RunConfig` names the task, the model overrides, the optimizer and schedule, the
number of steps and the evaluation cadence, the monitor settings and the seed. Everything
that is random in a run derives from ``seed`` (model initialisation) and ``data_seed``
(train/test split and batch order, default: ``seed``), so a config reproduces a run.
"""

from __future__ import annotations

import json
import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import msgspec

from ..errors import ConfigError

TASKS = ("modular", "multitask", "dyck", "scan", "lm")
OPTIMIZERS = ("adamw", "sgd", "muon")
SKETCHES = ("auto", "exact", "fold", "gaussian", "countsketch")

_POSITIVE = msgspec.Meta(ge=1)
#: a cadence in a config: a whole number of steps or (until_step or None, every) pairs (checked by Cadence)
Schedule = int | tuple[tuple[int | None, int], ...]
#: bounds of the fields beyond their type (checked by :func:`check_value` with msgspec)
BOUNDS: dict[str, msgspec.Meta] = {
    "modulus": msgspec.Meta(ge=2), "train_frac": msgspec.Meta(gt=0, lt=1), "seed": msgspec.Meta(ge=0),
    "data_seed": msgspec.Meta(ge=0), "lr": msgspec.Meta(gt=0), "weight_decay": msgspec.Meta(ge=0),
    "momentum": msgspec.Meta(ge=0, lt=1), "batch_size": _POSITIVE, "grad_clip": msgspec.Meta(gt=0),
    "warmup_steps": msgspec.Meta(ge=0), "steps": _POSITIVE,
    "grok_threshold": msgspec.Meta(ge=0, le=1), "stop_margin": msgspec.Meta(ge=0),
    "sketch_dim": _POSITIVE, "checkpoint_every": msgspec.Meta(ge=0), "threads": _POSITIVE,
    "snapshots": msgspec.Meta(ge=0),
}
#: fields that take one of a few words
CHOICES: dict[str, tuple[str, ...]] = {"task": TASKS, "optimizer": OPTIMIZERS, "sketch": SKETCHES}


def check_value(value: Any, hint: Any, key: str, meta: msgspec.Meta | None = None) -> Any:
    """``value`` converted to type ``hint`` (strictly: no ``"1e-3"`` for a float, no ``50.7``
    for an int, no ``true`` for a number; lists become tuples where the type says so), within
    ``meta``'s bounds, with every float finite; else ConfigError naming ``key``, the value and
    what was expected."""
    typ = _with_meta(hint, meta)
    try:
        out = msgspec.convert(value, typ, strict=True)
    except msgspec.ValidationError as e:
        m = re.fullmatch(r"(.*?)(?: - at `\$(.*)`)?", str(e), re.S)
        what, sub = (m.group(1), m.group(2) or "") if m else (str(e), "")
        raise ConfigError(f"{key}{sub}: {_lower(what.replace('`', ''))} (value: {value!r})") from None
    for v in _floats(out):
        if not math.isfinite(v):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return out


#: every integer size of a model (layers, widths, heads, lengths) is at least 1
_MODEL_BOUNDS = {int: msgspec.Meta(ge=1)}


def check_model_overrides(cfg_cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` of the model config dataclass ``cfg_cls``, each checked against its field's
    type (``model.<key>``); unknown keys are a ConfigError listing the known ones."""
    known = {f.name for f in fields(cfg_cls)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"model: unknown model options {bad} for {cfg_cls.__name__}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cfg_cls)
    return {k: check_value(v, hints[k], f"model.{k}", _MODEL_BOUNDS.get(hints[k])) for k, v in overrides.items()}


def check_task_options(fn: Any, opts: dict[str, Any], fixed: tuple[str, ...] = ()) -> dict[str, Any]:
    """``opts`` checked against the keyword arguments of the task generator ``fn`` (names and
    annotated types), as ``task_options.<key>``; ``fixed`` are set by the runner itself."""
    import inspect

    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    allowed = [n for n, p in sig.parameters.items()
               if n not in fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    out = {}
    for k, v in opts.items():
        if k not in allowed:
            raise ConfigError(f"task_options: unknown option {k!r} for {fn.__name__}; known: {', '.join(allowed) or 'none'}")
        out[k] = check_value(v, hints[k], f"task_options.{k}") if k in hints else v
    return out


def _task_parts(task: str) -> tuple[type, Any, tuple[str, ...]]:
    """(model config dataclass, task generator, generator arguments the runner sets) of a task."""
    if task == "scan":
        from ..models.seq2seq import Seq2SeqConfig
        from ..tasks.scan import make_scan

        return Seq2SeqConfig, make_scan, ("seed",)
    if task == "lm":
        from ..models.gpt import GPTConfig
        from ..tasks.lm import make_lm_corpus

        return GPTConfig, make_lm_corpus, ("seed",)
    from ..models.transformer import TransformerConfig
    from ..tasks import dyck, modular

    if task == "dyck":
        return TransformerConfig, dyck.make_dyck, ("seed",)
    if task == "multitask":
        return TransformerConfig, modular.make_multitask_modular, ("ops", "p", "train_frac", "seed")
    return TransformerConfig, modular.make_modular, ("op", "p", "train_frac", "seed")


def _with_meta(hint: Any, meta: msgspec.Meta | None) -> Any:
    if meta is None:
        return hint
    args = typing.get_args(hint)
    if type(None) in args:  # Optional[X]: the bounds apply to X
        inner = [a for a in args if a is not type(None)]
        return Annotated[inner[0], meta] | None if len(inner) == 1 else hint
    return Annotated[hint, meta]


def _lower(msg: str) -> str:
    return msg[:1].lower() + msg[1:]


def _floats(v: Any):
    if isinstance(v, float):
        yield v
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _floats(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _floats(x)


@dataclass
class RunConfig:
    """One training run with the monitor attached (defaults: the papers' modular setup)."""

    task: str = "modular"  # modular | multitask | dyck | scan | lm
    op: str = "add"  # modular operation; multitask: comma-separated list, e.g. "add,mul"
    modulus: int = 97  # p of the modular tasks
    train_frac: float = 0.5  # modular: fraction of all pairs used for training
    seed: int = 42  # model initialisation
    data_seed: int | None = None  # split and batch order (None: same as seed)
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the model's config dataclass
    task_options: dict[str, Any] = field(default_factory=dict)  # overrides of the task generator
    optimizer: str = "adamw"  # adamw | sgd | muon (Muon on 2-D weights, AdamW on the rest)
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    momentum: float = 0.9  # sgd momentum (Muon uses its own default 0.95)
    batch_size: int = 512  # sampled with replacement
    grad_clip: float | None = 1.0  # max gradient norm (None: no clipping)
    warmup_steps: int = 0  # linear learning-rate warm-up
    steps: int = 10_000  # maximum optimizer steps
    eval_every: Schedule = 100  # evaluate train and test metrics every this many steps, or on a schedule of
    #                             (until_step, every) pairs as for `every`
    grok_threshold: float = 0.9  # grok step: first evaluation with test accuracy ≥ this
    early_stop: bool = True  # stop after grokking plus a margin
    stop_margin: int = 1000  # steps to keep training after the grok step
    every: Schedule = 100  # monitor: sample every this many steps, or on a schedule of (until_step or null,
    #                        every) pairs such as [[400, 10], [null, 100]] (spectral_edge.stream.cadence)
    windows: tuple[int, ...] = (10,)  # monitor: window sizes
    sketch: str = "auto"  # monitor: exact | fold | gaussian | countsketch | auto
    sketch_dim: int | None = None  # monitor: sketch dimension (None: 10·max W)
    selection: str = "attention"  # monitor: preset (all | attention | trunk)
    group_by: str = "none"  # monitor: none | layer | matrix
    gradients: bool = False  # monitor: also the gradient stream (gradient-SED)
    probes: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # e.g. {"defect": {"every": 100}}
    alarm: bool | str = True  # True: the default grokking alarm when the probes it needs are present; a name
    #                           (recommended | geometry | paper | validation): that alarm; False: none
    checkpoint_every: int = 0  # save parameters every this many steps (0: only the final state)
    snapshots: int | None = None  # keep the last N snapshots of the monitored tensors (every `every` steps) in
    #                               snapshots.safetensors for `spectral-edge modes` (None: 21 for the modular
    #                               tasks, 0 otherwise; 0: none)
    threads: int | None = None  # torch intra-op threads (None: leave as is)
    intervention: dict[str, Any] | None = None  # an [intervention] table (spectral_edge.interventions.spec):
    #                                             kind, strength, start, basis_from, …; None: plain training

    @property
    def has_validation_split(self) -> bool:
        """Whether the run's evaluations log a validation loss apart from the test split (modular:
        ``task_options.val_frac`` > 0; the language model: its held-out text)."""
        if self.task == "modular":
            return bool(self.task_options.get("val_frac"))
        return self.task == "lm"

    def __post_init__(self) -> None:
        """Every field checked against its type and bounds (:func:`check_value`), the word
        fields against their choices; a ConfigError names the key, the value and what was
        expected."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            setattr(self, f.name, check_value(getattr(self, f.name), hints[f.name], f.name, BOUNDS.get(f.name)))
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name}: unknown {name} {getattr(self, name)!r}; choose one of {', '.join(choices)}")
        from ..stream.cadence import Cadence

        for name in ("every", "eval_every"):  # a whole number ≥ 1 or a valid schedule (one-line errors)
            c = Cadence(getattr(self, name), name=name)
            setattr(self, name, c.period if c.period is not None else c.schedule)
        if isinstance(self.every, tuple) and self.effective_snapshots:
            raise ConfigError("snapshots: the snapshot ring keeps evenly spaced states; with a schedule for `every` "
                              "set snapshots = 0")
        if not self.windows or min(self.windows) < 2:
            raise ConfigError(f"windows: monitor windows must be ≥ 2, got {list(self.windows)}")
        for b in self.betas:
            if not 0 <= b < 1:
                raise ConfigError(f"betas: each must be in [0, 1), got {list(self.betas)}")
        for name, opts in self.probes.items():
            if opts is None:
                self.probes[name] = {}
        if isinstance(self.alarm, str):
            from ..detectors.alarm import ALARM_NAMES

            if self.alarm not in ALARM_NAMES:
                raise ConfigError(f"alarm: unknown alarm {self.alarm!r}; choose one of {', '.join(ALARM_NAMES)}, "
                                  "true (the default) or false (none)")
        if self.intervention is not None:
            self.intervention = check_intervention(self.intervention, self.steps)
        from ..selection import Selection
        from ..tasks.modular import OPERATIONS, canonical_op

        try:
            Selection(preset=self.selection, group_by=self.group_by)  # the preset and grouping are valid
        except ConfigError as e:
            raise ConfigError(f"selection/group_by: {e}") from None
        model_cls, generator, fixed = _task_parts(self.task)
        check_model_overrides(model_cls, self.model)
        opts = dict(self.task_options)
        if self.task == "lm" and "block_size" in opts:
            check_value(opts.pop("block_size"), int, "task_options.block_size", msgspec.Meta(ge=2))
        check_task_options(generator, opts, fixed)
        if self.task in ("modular", "multitask"):
            for op in self.op.split(",") if self.task == "multitask" else [self.op]:
                try:
                    canonical_op(op.strip())
                except ConfigError:
                    raise ConfigError(f"op: unknown operation {op.strip()!r}; choose one of "
                                      f"{', '.join(sorted(OPERATIONS))}") from None

    @property
    def effective_snapshots(self) -> int:
        """How many snapshots the run keeps (see ``snapshots``)."""
        if self.snapshots is not None:
            return int(self.snapshots)
        return 21 if self.task in ("modular", "multitask") else 0

    @property
    def effective_data_seed(self) -> int:
        return self.seed if self.data_seed is None else int(self.data_seed)

    @property
    def intervention_spec(self) -> Any:
        """The ``[intervention]`` table as an :class:`~spectral_edge.interventions.spec.InterventionSpec`
        (None without one)."""
        if self.intervention is None:
            return None
        from ..interventions.spec import InterventionSpec

        return InterventionSpec(**self.intervention)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["windows"] = list(self.windows)
        if d["intervention"] is None:
            del d["intervention"]  # a run without one has the config (and config.json) it always had
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None) -> "RunConfig":
        """A validated config from a mapping of fields; ``where`` (a file, ``--set``) prefixes
        any error."""
        try:
            if not isinstance(data, dict):
                raise ConfigError(f"the config must be a table/object of fields, got {type(data).__name__}")
            known = {f.name for f in fields(cls)}
            unknown = sorted(str(k) for k in set(data) - known)
            if unknown:
                raise ConfigError(f"unknown config keys {unknown}; known keys: {', '.join(sorted(known))}")
            return cls(**data)
        except ConfigError as e:
            if where is None:
                raise
            raise ConfigError(f"{where}: {e}") from None

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> "RunConfig":
        """Load a ``.json`` or ``.toml`` config (top-level keys are the fields above), then apply
        ``overrides`` (``key=value`` strings, the value read as JSON, else as a string). The
        whole config is validated before anything uses it; errors name the file (or the
        ``--set`` item), the key, the value and what was expected."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix.lower() == ".toml":
                import tomllib

                data = tomllib.loads(text)
            elif path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                raise ConfigError(f"{path}: config files must be .json or .toml")
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a valid config file ({e})") from None
        cfg = cls.from_dict(data, where=str(path))
        if not overrides:
            return cfg
        merged = cfg.to_dict()
        for item in overrides:
            key, value = parse_override(item)
            merged[key] = value
            cls.from_dict(merged, where=f"--set {item}")  # name the override that broke it
        return cls.from_dict(merged, where=f"{path} with --set")


#: bounds of the ``[intervention]`` keys beyond their type
INTERVENTION_BOUNDS: dict[str, msgspec.Meta] = {
    "strength": msgspec.Meta(ge=0), "start": msgspec.Meta(ge=0), "every": _POSITIVE, "n_components": _POSITIVE,
    "rank": _POSITIVE, "window": _POSITIVE, "seed": msgspec.Meta(ge=0), "kick_samples": _POSITIVE,
    "kick_eta": msgspec.Meta(gt=0), "kick_batch_size": _POSITIVE,
}


def check_intervention(table: Any, steps: int) -> dict[str, Any]:
    """The ``[intervention]`` table checked key by key (types and bounds through
    :func:`check_value`, as ``intervention.<key>``), then as a whole
    (:class:`~spectral_edge.interventions.spec.InterventionSpec`: the kind, a basis where one is
    needed), and its first step against the run's ``steps``; returns the checked table."""
    from ..interventions.spec import KINDS, InterventionSpec, key_label

    if not isinstance(table, dict):
        raise ConfigError(f"intervention: must be a table of keys (kind, strength, start, basis_from, …), "
                          f"got {type(table).__name__}")
    hints = typing.get_type_hints(InterventionSpec)
    known = [f.name for f in fields(InterventionSpec)]
    unknown = sorted(str(k) for k in set(table) - set(known))
    if unknown:
        raise ConfigError(f"intervention: unknown keys {unknown}; known keys: {', '.join(known)}")
    if "kind" not in table:
        raise ConfigError(f"{key_label('kind')}: missing; choose one of {', '.join(KINDS)}")
    clean = {k: check_value(v, hints[k], key_label(k), INTERVENTION_BOUNDS.get(k)) for k, v in table.items()}
    spec = InterventionSpec(**clean)
    start = spec.resolved()["start"]
    if start > steps:
        default = f" (the default of {spec.kind}; set it with --intervention-start)" if spec.start is None else ""
        raise ConfigError(f"{key_label('start')}: step {start}{default} is beyond the run's {steps} steps")
    return clean


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` → (key, value): the value as JSON (``4000``, ``1e-3``, ``[5, 10]``,
    ``true``), else the plain string (``adamw``)."""
    if "=" not in item:
        raise ConfigError(f"--set takes key=value, got {item!r}")
    key, raw = (part.strip() for part in item.split("=", 1))
    if not key:
        raise ConfigError(f"--set {item}: the key is empty")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw
