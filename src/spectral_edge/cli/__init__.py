"""The ``spectral-edge`` command line: one module per command, all on one typer app.

Shared conventions (errors, progress, ``--json``) live in :mod:`._app`. Each command module
registers itself on import; to add a command, write ``cli/<name>.py`` and import it below.
"""

from __future__ import annotations

from ._app import app
from . import analyze as _analyze  # noqa: F401,E402  (registers `analyze`)
from . import demo as _demo  # noqa: F401,E402  (registers `demo`)
from . import experiments as _experiments  # noqa: F401,E402  (registers `grok`, `run`)
from . import analyses as _analyses  # noqa: F401,E402  (registers phases, coupling, thesis)
from . import report as _report  # noqa: F401,E402  (registers report, compare)
from . import reproduce as _reproduce  # noqa: F401,E402  (registers reproduce trajectories, grokking)
from . import modes as _modes  # noqa: F401,E402  (registers `modes`)
from . import alarms as _alarms  # noqa: F401,E402  (registers `replay`)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``spectral-edge`` console script."""
    app(args=argv)


__all__ = ["app", "main"]
