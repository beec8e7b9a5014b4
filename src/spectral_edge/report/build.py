"""Writing the report of one run: :func:`build_report` (and :func:`write_report`, which also
returns the facts), plus the output helpers :mod:`.compare` shares (:func:`resolve_out`,
:func:`write_text_atomic`).

The last step of the one-way pipeline: :func:`~.load.load_view` reads the run,
:func:`~.summary.summary_facts` states the findings, :mod:`.figures` draws them and
:mod:`.html` lays out the page.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from ..io.tables import check_outputs
from . import figures, html
from .load import load_modes, load_view
from .summary import summary_facts
from .view import RunView

#: progress callback: ``cb(done, total, what)``
ProgressFn = Callable[[int, int, str], None]


# ---------------------------------------------------------------------------- output
def resolve_out(out: str | Path | None, default: Path) -> Path:
    """The output path (``.html``/``.htm``); ``default`` when None. Parent folders are created."""
    p = Path(default if out is None else out).expanduser()
    if p.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"{p}: the report is an HTML page; give an output path ending in .html")
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder; give a file name ending in .html")
    return p


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never half a page)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the report here ({e.strerror}); choose another --out") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def default_out(run: RunView) -> Path:
    """``report.html`` in the run folder (or beside the input file)."""
    return (run.source if run.source.is_dir() else run.source.parent) / "report.html"


def write_report(source: str | Path, out: str | Path | None = None, window: int | None = None, group: str = "all",
                 *, label: str | None = None, progress: ProgressFn | None = None, overwrite: bool = True):
    """Build the report of one run; returns (path written, :class:`~.summary.Facts`).
    ``overwrite=False``: an existing page is an error (checked before any figure is drawn)."""
    cb = progress or (lambda done, total, what: None)
    total = 3 + len(figures.RUN_FIGURES)
    cb(0, total, "reading")
    run = load_view(source, window, group, label, modes=False)
    if not run.has_anything:
        raise ConfigError(f"{run.source}: nothing to plot (no windows, evaluations, probes or alarms)")
    path = resolve_out(out, default_out(run))
    check_outputs({"--out" if out is not None else "the report": path}, overwrite=overwrite, need_folder=False)
    cb(1, total, "functional modes")
    run = load_modes(run)
    cb(2, total, "summary")
    facts = summary_facts(run)
    sections = []
    for i, (name, fn) in enumerate(figures.RUN_FIGURES.items()):
        cb(3 + i, total, name)
        section = fn(run, facts)
        if section is not None:  # a figure that does not apply to this run (functional modes of a non-modular run)
            sections.append(section)
    page = html.render_run(run, facts, sections)
    write_text_atomic(path, page)
    cb(total, total, "written")
    return path, facts


def build_report(source: str | Path, out: str | Path | None = None, window: int | None = None,
                 group: str = "all", *, label: str | None = None, progress: ProgressFn | None = None,
                 overwrite: bool = True) -> Path:
    """Write a self-contained HTML report of one run and return its path.

    ``source``: a run folder, a history ``.jsonl`` or an ``analyze`` table. ``out``: the
    page (default ``report.html`` in the run folder / beside the file). ``window``: W to
    show (default 10 when recorded, else the smallest). ``group``: parameter group.
    ``overwrite``: replace an existing page (the default; the command line asks for
    ``--overwrite``). Raises :class:`~spectral_edge.errors.ConfigError` for unusable input.
    """
    return write_report(source, out, window, group, label=label, progress=progress, overwrite=overwrite)[0]
