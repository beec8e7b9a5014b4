"""The typer application object and the conventions every command shares.

- A user error (any :class:`~spectral_edge.errors.SpectralEdgeError`) prints one line
  ``spectral-edge: error: <what and where>`` on stderr and exits with status 2, with no
  traceback unless ``spectral-edge --debug …`` was given.
- Usage errors (unknown flags, bad values) are click's: also exit status 2.
- Progress bars go to stderr and only on a terminal; ``--json`` prints machine-readable
  output on stdout; ``--quiet`` silences the human summary.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

from ..errors import ConfigError, SpectralEdgeError

_STATE = {"debug": False}


class _Group(TyperGroup):
    """Runs a command; a user error becomes one line on stderr and exit status 2."""

    def invoke(self, ctx):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except SpectralEdgeError as e:
            if _STATE["debug"]:
                raise
            print(f"spectral-edge: error: {e}", file=sys.stderr)
            ctx.exit(2)


app = typer.Typer(
    cls=_Group,
    name="spectral-edge",
    help="Read the geometry of training trajectories: sketched rolling-window spectra, the spectral edge k*, "
    "its phases, and early warnings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    _STATE["debug"] = debug


def stderr_console():
    """A rich console on stderr (for progress and warnings)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def parse_windows(values: list[str]) -> tuple[int, ...]:
    """``--window`` values: repeated and/or comma-separated integers (default (10,))."""
    out: list[int] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part))
            except ValueError:
                raise ConfigError(f"--window takes integers (e.g. 10 or 5,10,20), got {part!r}") from None
    return tuple(out) or (10,)


def progress(label: str, quiet: bool) -> tuple[Any, Callable[[int, int, Any], None] | None]:
    """A rich progress bar on a terminal, else a no-op: returns (context manager, callback
    ``cb(done, total, where)``); ``where`` is a training step (shown as "step N") or any
    text (shown as is). The callback is None when no bar is shown."""
    console = stderr_console()
    if quiet or not console.is_terminal:
        return contextlib.nullcontext(), None
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    prog = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[where]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=True)
    task = prog.add_task(label, total=None, where="")

    def cb(done: int, total: int, where: Any) -> None:
        text = f"step {where}" if isinstance(where, int) else str(where)
        prog.update(task, completed=done, total=total, where=text)

    return prog, cb


def echo_json(obj: Any) -> None:
    """Print one JSON document on stdout (NaN → null)."""
    from ..io.history import json_safe

    typer.echo(json.dumps(json_safe(obj)))


def warner(silent: bool) -> Callable[[str], None]:
    """A function printing ``warning: …`` on stderr, or doing nothing when ``silent``."""
    if silent:
        return lambda msg: None
    console = stderr_console()
    return lambda msg: console.print(f"[yellow]warning:[/] {msg}")
