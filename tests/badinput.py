"""The bad-input corpus harness: every user error gives exit status 2, exactly one line on
stderr naming the problem (and the file or key), no traceback, and leaves every file that
existed before byte-identical (and creates none, unless a case says which it may create).

A corpus module defines cases and runs them through :func:`check`::

    from badinput import Case, check

    CASES = [
        Case("toml-steps-float", make=lambda d: ["run", str(write(d / "c.toml", "steps = 50.7")), "--out", ...],
             expect=["steps", "c.toml"]),
    ]

    @pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
    def test_bad_input(case, tmp_path):
        check(case, tmp_path)

``make(folder)`` builds the inputs inside ``folder`` (an empty temporary folder) and returns
the command-line arguments; ``expect`` lists fragments that must all appear in the one error
line (the problem, and the file or key it is about). The command runs in-process through
typer's runner (a traceback there is an uncaught exception, which fails the case).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from typer.testing import CliRunner


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], Sequence[str]]
    expect: Sequence[str]
    #: paths (relative to the folder) that the failing command may create, e.g. a log
    may_create: Sequence[str] = field(default_factory=tuple)
    #: environment variables for the command (e.g. to hide an optional dependency)
    env: dict[str, str] = field(default_factory=dict)


def snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every path below ``folder``: (content for files, None for folders and links; mode bits)."""
    out: dict[str, tuple[bytes | None, int]] = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(folder))
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                try:
                    out[rel] = (p.read_bytes(), stat.S_IMODE(st.st_mode))
                except PermissionError:
                    out[rel] = (b"<unreadable>", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = (None, stat.S_IMODE(st.st_mode))
    return out


def run(args: Sequence[str], env: dict[str, str] | None = None):
    from spectral_edge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env or None)


def check(case: Case, folder: Path) -> str:
    """Run ``case`` in ``folder`` and assert the contract (see module docs); returns the line."""
    args = case.make(folder)
    before = snapshot(folder)
    res = run(args, case.env)
    out = res.stdout or ""
    err = res.stderr or ""
    what = f"{case.id}: exit {res.exit_code}\nstdout: {out}\nstderr: {err}\nexception: {res.exception!r}"
    assert res.exception is None or isinstance(res.exception, SystemExit), what
    assert res.exit_code == 2, what
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, what
    assert "Traceback" not in err + out, what
    line = lines[0]
    for frag in case.expect:
        assert frag.lower() in line.lower(), f"{case.id}: {frag!r} not in {line!r}"
    after = snapshot(folder)
    changed = [p for p in before if p not in after or after[p] != before[p]]
    assert not changed, f"{case.id}: changed or removed {changed}"
    new = [p for p in after if p not in before and not any(p == m or p.startswith(m.rstrip("/") + "/")
                                                           for m in case.may_create)]
    assert not new, f"{case.id}: created {new}"
    return line


def hide_modules(monkeypatch, names) -> None:
    """Make ``import <name>`` (and its submodules) fail for the rest of a test, as when an
    optional dependency is not installed."""
    import sys

    for name in names:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.setitem(sys.modules, mod, None)
        monkeypatch.setitem(sys.modules, name, None)
