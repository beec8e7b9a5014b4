"""Reference experiments: declarative configs, workloads for every task, and the runner.

``run_experiment(RunConfig(op="add"), "runs/add")`` trains the papers' modular-arithmetic
transformer with the monitor attached and writes a run folder (see :mod:`.runner`).
"""

from .config import RunConfig
from .runner import RunResult, run_experiment

__all__ = ["RunConfig", "RunResult", "run_experiment"]
