"""``spectral-edge replay``: replay a named grokking alarm on a finished run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ._app import app, echo_json

ALARM_HELP = ("recommended | geometry | paper | validation | all (default: the default alarm, "
              "spectral_edge.detectors.alarm.DEFAULT_ALARM). Repeatable.")


def replay_run(source: Path, alarms: list[str], threshold: float = 0.9) -> dict[str, Any]:
    """Warning step, lead and reason of each named alarm replayed on the run at ``source`` (a
    run folder or a history.jsonl), with the run's grok step (test accuracy ≥ ``threshold``)."""
    from ..detectors.alarm import ALARM_NAMES, DEFAULT_ALARM, make_alarm, replay_events
    from ..detectors.signals import ACC_KEYS, as_rows, grok_step
    from ..errors import ConfigError
    from ..io.history import read_history

    names: list[str] = []
    for a in alarms or [DEFAULT_ALARM]:
        for n in (ALARM_NAMES if a == "all" else (a,)):
            if n not in ALARM_NAMES:
                raise ConfigError(f"--alarm: unknown alarm {n!r}; choose one of {', '.join(ALARM_NAMES)} or all")
            if n not in names:
                names.append(n)
    history = Path(source) / "history.jsonl" if Path(source).is_dir() else Path(source)
    rows = as_rows(read_history(history))
    if not any(r.get("step") is not None for r in rows):
        raise ConfigError(f"{history}: holds no history rows (a spectral-edge history.jsonl has one JSON object "
                          "per line)")
    has_acc = any(r.get("kind") == "log" and any(r.get(k) is not None for k in ACC_KEYS) for r in rows)
    grok = grok_step(rows, threshold) if has_acc else None
    out: dict[str, Any] = {"run": str(source), "history": str(history), "grok_step": grok,
                           "grok_threshold": threshold, "alarms": []}
    for n in names:
        ev = next((e for e in replay_events(rows, make_alarm(n)) if e.get("event") == "alarm"), None)
        warn = None if ev is None else int(ev["step"])
        out["alarms"].append({"alarm": n, "warning_step": warn,
                              "lead": None if warn is None or grok is None else grok - warn,
                              "reason": None if ev is None else ev.get("reason")})
    return out


@app.command("replay", epilog="Examples:\n\n  spectral-edge replay runs/add-s42\n\n"
             "  spectral-edge replay runs/add-s42 --alarm geometry --alarm validation\n\n"
             "  spectral-edge replay runs/add-s42/history.jsonl --alarm all --json\n\n"
             "A positive lead is how many steps the warning came before the grok step; negative: after it.")
def replay_command(
    run: Path = typer.Argument(..., help="A run folder (with history.jsonl) or a history.jsonl file."),
    alarm: list[str] = typer.Option([], "--alarm", "-a", help=ALARM_HELP),
    threshold: float = typer.Option(0.9, "--threshold", min=0.0, max=1.0,
                                    help="Test accuracy that defines the grok step."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Replay grokking alarms on a finished run: each one's warning step and its lead before grokking."""
    res = replay_run(run, alarm, threshold)
    if as_json:
        echo_json(res)
        return
    from rich.console import Console
    from rich.table import Table

    grok = res["grok_step"]
    t = Table(title=f"{run}: grok step {grok if grok is not None else 'none (did not grok)'}", title_justify="left")
    for col in ("alarm", "warning step", "lead (steps)", "why it fired"):
        t.add_column(col)
    for a in res["alarms"]:
        t.add_row(a["alarm"], "–" if a["warning_step"] is None else str(a["warning_step"]),
                  "–" if a["lead"] is None else str(a["lead"]), a["reason"] or "did not fire")
    Console().print(t)
