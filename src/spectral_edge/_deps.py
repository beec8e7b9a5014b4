"""Optional dependencies: :func:`require` imports one or says, in one line, which extra installs it.

``pip install spectral-edge`` brings the core (torch, numpy, pandas, pyarrow, typer, rich);
the analyses and figures need extras (see ``pyproject.toml``)::

    stats = require("scipy.stats", "analysis", "the coupling analysis")

raises :class:`MissingDependencyError` (a :class:`~spectral_edge.errors.SpectralEdgeError`, so
the command line prints it as one line with exit status 2, and an ``ImportError``, so code that
probes for a module with ``except ImportError`` keeps working) when scipy is not installed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["MissingDependencyError", "require"]


def require(module: str, extra: str, what: str, alternative: str | None = None) -> ModuleType:
    """``module`` imported (a dotted name is fine: ``"scipy.stats"``), or
    :class:`MissingDependencyError` saying that ``what`` needs it and that
    ``pip install 'spectral-edge[<extra>]'`` installs it (``alternative``: what else the user
    can do, added in parentheses)."""
    top = module.partition(".")[0]
    try:
        importlib.import_module(top)  # a hidden or absent package fails here, whatever is cached below it
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or top
        if not (missing == top or missing.startswith(top + ".")):
            missing = f"{top} ({missing} is missing)"  # the package is there but one of its own imports is not
        other = f" (or {alternative})" if alternative else ""
        raise MissingDependencyError(f"{what} needs {missing}, which is not installed: "
                                     f"pip install 'spectral-edge[{extra}]'{other}") from None
