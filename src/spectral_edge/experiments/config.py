"""Declarative experiment configuration: one dataclass, loadable from JSON or TOML.

A :class:`RunConfig` names the task, the model overrides, the optimizer and schedule, the
number of steps and the evaluation cadence, the monitor settings and the seed. Everything
that is random in a run derives from ``seed`` (model initialisation) and ``data_seed``
(train/test split and batch order, default: ``seed``), so a config reproduces a run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError

TASKS = ("modular", "multitask", "dyck", "scan", "lm")
OPTIMIZERS = ("adamw", "sgd", "muon")


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
    eval_every: int = 100  # evaluate train and test metrics every this many steps
    grok_threshold: float = 0.9  # grok step: first evaluation with test accuracy ≥ this
    early_stop: bool = True  # stop after grokking plus a margin
    stop_margin: int = 1000  # steps to keep training after the grok step
    every: int = 100  # monitor: sample every this many steps
    windows: tuple[int, ...] = (10,)  # monitor: window sizes
    sketch: str = "auto"  # monitor: exact | fold | gaussian | countsketch | auto
    sketch_dim: int | None = None  # monitor: sketch dimension (None: 10·max W)
    selection: str = "attention"  # monitor: preset (all | attention | trunk)
    group_by: str = "none"  # monitor: none | layer | matrix
    gradients: bool = False  # monitor: also the gradient stream (gradient-SED)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. {"defect": {"every": 100}}
    alarm: bool = True  # attach the grokking alarm when the probes it needs are present
    checkpoint_every: int = 0  # save parameters every this many steps (0: only the final state)
    threads: int | None = None  # torch intra-op threads (None: leave as is)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        for name in ("steps", "eval_every", "every", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.windows = tuple(int(w) for w in self.windows)
        if not self.windows or min(self.windows) < 2:
            raise ConfigError(f"monitor windows must be ≥ 2, got {list(self.windows)}")

    @property
    def effective_data_seed(self) -> int:
        return self.seed if self.data_seed is None else int(self.data_seed)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["windows"] = list(self.windows)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """Load a ``.json`` or ``.toml`` config (top-level keys are the fields above)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            if path.suffix.lower() == ".toml":
                import tomllib

                data = tomllib.loads(path.read_text())
            elif path.suffix.lower() == ".json":
                data = json.loads(path.read_text())
            else:
                raise ConfigError(f"{path}: config files must be .json or .toml")
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a valid config file ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config must be a table/object of fields")
        return cls.from_dict(data)
