"""The typer application object and the conventions every command shares.

- A user error (any :class:`~spectral_edge.errors.SpectralEdgeError`) prints one line
  ``spectral-edge: error: <what and where>`` on stderr and exits with status 2, with no
  traceback unless ``spectral-edge --debug …`` was given.
- Usage errors (unknown flags, bad values, a value after a flag) print the same one line,
  with a pointer to ``--help`` on that line; also exit status 2.
- Library warnings (``warnings.warn``) print as one line ``spectral-edge: warning: …``.
- Progress bars go to stderr and only on a terminal; ``--json`` prints machine-readable
  output on stdout; ``--quiet`` silences the human summary. Flags take no value (help shows
  none).
- Outputs: a command that writes ``--out`` checks it before any work (:func:`check_outputs`):
  never one of the command's inputs, never an existing file unless ``--overwrite``; it writes
  atomically, and only after all the work succeeded.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from ..errors import ConfigError, SpectralEdgeError

_STATE = {"debug": False}
#: values someone may write after a flag (``--json true``)
_FLAG_VALUES = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = _one_line(message)
    text = text[len("spectral-edge: "):] if text.startswith("spectral-edge: ") else text
    print(f"spectral-edge: warning: {text}", file=sys.stderr)


def _plain_flags(cmd: Any, ctx: Any) -> None:
    """Flags (``--json``, ``--quiet``, ``--help``…) show no value type in help (typer shows
    ``<bool>``, which reads as if they took a value); sub-commands included."""
    for p in cmd.get_params(ctx):
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
    for sub in getattr(cmd, "commands", {}).values():
        _plain_flags(sub, ctx)


def _usage_line(e: Any, args: list[str]) -> str:
    """A usage error as one line: the problem, a hint for a value written after a flag, and
    where the help is."""
    msg = _one_line(e.format_message())
    ctx = getattr(e, "ctx", None)
    cmd = getattr(ctx, "command", None)
    if cmd is not None and "extra argument" in msg:
        flags = {o for p in cmd.params if getattr(p, "is_flag", False) for o in (*p.opts, *p.secondary_opts)}
        for a, b in zip(args, args[1:]):
            if a in flags and b.lower() in _FLAG_VALUES:
                msg += f"; {a} is a flag and takes no value: write {a} alone, or leave it out"
                break
    if ctx is not None:
        msg += f" (see '{ctx.command_path} --help')"
    return msg


class _Group(TyperGroup):
    """Runs a command; a user error or a usage error becomes one line on stderr and exit status 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as e:  # click's usage errors (and other ClickExceptions)
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `spectral-edge`: the help, as before
                e.show()  # type: ignore[attr-defined]
            else:
                print(f"spectral-edge: error: {_usage_line(e, argv)}", file=sys.stderr)
            sys.exit(e.exit_code)
        except typer.Abort:
            print("spectral-edge: aborted", file=sys.stderr)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def get_params(self, ctx):  # type: ignore[override]
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params

    def get_command(self, ctx, cmd_name):  # type: ignore[override]
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _plain_flags(cmd, ctx)
        return cmd

    def invoke(self, ctx):  # type: ignore[override]
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except SpectralEdgeError as e:
                if _STATE["debug"]:
                    raise
                print(f"spectral-edge: error: {_one_line(e)}", file=sys.stderr)
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


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"spectral-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    _STATE["debug"] = debug


def stderr_console():
    """A rich console on stderr (for progress and warnings)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def parse_windows(values: list[str]) -> tuple[int, ...]:
    """``--window`` values: repeated and/or comma-separated integers, passed on as given (a
    value the library refuses, such as 0, reaches it unchanged); none at all is an error."""
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
    if not out:
        raise ConfigError(f"--window needs at least one integer (e.g. 10 or 5,10,20), got {' '.join(map(repr, values))}")
    return tuple(out)


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
