"""Run every case of the bad-input corpus (tests/test_badinput_*.py) and print, per corpus, a
Markdown table of what the user gets: the one line on stderr, with the temporary folder shown
as ``…``. docs/reliability.md embeds its output between the markers below; regenerate with

    python scripts/reliability_table.py --write docs/reliability.md

Each case is checked with the same harness as the tests (exit 2, one line, no traceback,
nothing changed or created), so a row exists only for a case that holds."""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- corpus:begin (scripts/reliability_table.py) -->", "<!-- corpus:end -->"
TITLES = {
    "test_badinput_config": "Run configs (TOML, JSON, `--set`, `grok` flags)",
    "test_badinput_runs": "Run folders (`run`, `grok`, `demo`, `--overwrite`, `--resume`)",
    "test_badinput_cli": "Histories, tables, outputs and the command line",
    "test_badinput_checkpoints": "Checkpoints (`analyze`)",
    "test_badinput_sketch": "Sketch and window settings (`analyze`)",
    "test_badinput_modes": "Functional modes (`modes`)",
    "test_badinput_remote": "Stores, Hub revisions and workers (`analyze s3://…`, `hf://…`, `--workers`, `--resume`)",
    "test_badinput_interventions": "Interventions (`grok`/`run` `--intervention`, `--basis-from`, `[intervention]`)",
    "test_badinput_alarms": "Alarms (`replay`, `grok`/`run` `--alarm`, `alarm =`, `--val-frac`, probe schedules)",
}


def corpus_cases(module):
    """Every module-level list of Case objects in a corpus module, in order."""
    from badinput import Case

    seen, out = set(), []
    for value in vars(module).values():
        if isinstance(value, list) and value and all(isinstance(c, Case) for c in value):
            for c in value:
                if c.id not in seen:
                    seen.add(c.id)
                    out.append(c)
    return out


def run_case(module, case) -> str:
    from badinput import check

    hidden = getattr(module, "HIDE", {}).get(case.id, ())
    saved = {m: sys.modules[m] for m in list(sys.modules) if any(m == h or m.startswith(h + ".") for h in hidden)}
    try:
        for h in hidden:
            for m in saved:
                sys.modules[m] = None  # type: ignore[assignment]
            sys.modules[h] = None  # type: ignore[assignment]
        with tempfile.TemporaryDirectory() as d:
            line = check(case, Path(d))
            return line.replace(str(Path(d).resolve()), "…").replace(d, "…")
    finally:
        for h in hidden:
            sys.modules.pop(h, None)
        sys.modules.update(saved)


def table() -> str:
    sys.path.insert(0, str(ROOT / "tests"))
    parts = []
    for name, title in TITLES.items():
        module = importlib.import_module(name)
        rows = []
        for case in corpus_cases(module):
            line = run_case(module, case).replace("|", "\\|")
            rows.append(f"| `{case.id}` | {line} |")
        parts.append(f"### {title}\n\n{len(rows)} cases, from `tests/{name}.py`.\n\n| case | what the user gets "
                     f"(stderr; exit status 2; files untouched) |\n|---|---|\n" + "\n".join(rows))
    return "\n\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, help="replace the table between the markers in this Markdown file")
    args = ap.parse_args()
    text = table()
    if args.write is None:
        print(text)
        return
    doc = args.write.read_text(encoding="utf-8")
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{args.write}: the markers {BEGIN!r} and {END!r} are missing")
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    tmp = args.write.with_suffix(".tmp")
    tmp.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")
    tmp.replace(args.write)


if __name__ == "__main__":
    main()
