"""The page template: one self-contained HTML file.

Everything is inline: the CSS, the SVG figures, and the facts as a JSON data block (``<script
type="application/json">``, never executed). No JavaScript, no web fonts, no CDN, no
network reference of any kind: the page opens from a ``file://`` URL on an offline machine
and prints cleanly. Every text that comes from an input file is escaped.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ..io.history import json_safe
from .summary import Facts, summary_caveats, summary_sentences
from .view import RunView, Section


CSS = """
:root { --ink:#1d232a; --muted:#5b6570; --line:#dde2e7; --accent:#1f4e79; --bg:#fbfcfd; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color:var(--ink); background:var(--bg); }
main { max-width: 980px; margin: 0 auto; padding: 24px 20px 48px; }
header h1 { font-size: 1.55em; margin: 0 0 4px; }
header .sub { color: var(--muted); margin: 0; font-size: .9em; word-break: break-all; }
header .setup { margin: 6px 0 0; font-size: .92em; }
nav { margin: 14px 0 8px; font-size: .9em; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; margin: 16px 0; }
h2 { font-size: 1.15em; margin: 0 0 10px; color: var(--accent); }
h3 { font-size: 1em; margin: 14px 0 6px; }
ul { margin: 4px 0; padding-left: 1.3em; }
li { margin: 3px 0; }
ul.caveats li { color: var(--muted); font-size: .93em; }
figure { margin: 0; }
figure svg { display: block; width: 100%; height: auto; }
figure svg * { stroke-linejoin: round; stroke-linecap: butt; }
figcaption { color: var(--muted); font-size: .9em; margin-top: 6px; }
p.note { color: var(--muted); font-style: italic; margin: 0; }
table { border-collapse: collapse; font-size: .9em; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num { font-variant-numeric: tabular-nums; }
.swatch { display:inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
details summary { cursor: pointer; color: var(--accent); }
footer { color: var(--muted); font-size: .8em; text-align: center; margin-top: 24px; }
@media print { body { background:#fff; } section { break-inside: avoid; border: none; } nav { display:none; } }
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.4g}"
    return str(v)


def _json_block(obj: Any, element_id: str) -> str:
    text = json.dumps(json_safe(obj), ensure_ascii=False, indent=1).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">\n{text}\n</script>'


def _page(title: str, subtitle: str, body: Sequence[str], nav: Sequence[tuple[str, str]], setup: str = "") -> str:
    from .. import __version__

    links = "".join(f'<a href="#{escape(k)}">{escape(t)}</a>' for k, t in nav)
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="generator" content="spectral-edge {escape(__version__)}">',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body><main>",
        f"<header><h1>{escape(title)}</h1><p class=\"sub\">{escape(subtitle)}</p>"
        + (f'<p class="setup">{escape(setup)}</p>' if setup else "") + "</header>",
        f"<nav>{links}</nav>",
        *body,
        f"<footer>spectral-edge {escape(__version__)} · generated {when} · self-contained page, no network</footer>",
        "</main></body></html>",
        "",
    ])


def section_html(s: Section) -> str:
    """A figure section (or its one-line note), with its table and sentences when it has them."""
    head = f'<section id="fig-{escape(s.key)}" class="figure"><h2>{escape(s.title)}</h2>'
    if s.svg is None:
        body = f'<p class="note">{escape(s.note or "Not available.")}</p>'
    else:
        body = f"<figure>{s.svg}<figcaption>{escape(s.caption)}</figcaption></figure>"
    if s.table is not None:
        header, rows = s.table
        body += ('<table class="section-table"><tr>' + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"
                 + "".join("<tr>" + "".join(f'<td class="num">{escape(c)}</td>' for c in r) + "</tr>" for r in rows)
                 + "</table>")
    if s.points:
        body += '<ul class="findings">' + "".join(f"<li>{escape(p)}</li>" for p in s.points) + "</ul>"
    return f"{head}{body}</section>"


def _kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _flat(obj: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out += _flat(v, key + ".")
        elif isinstance(v, (list, tuple)):
            out.append((key, ", ".join(map(str, v)) if len(v) <= 12 else f"{len(v)} values"))
        else:
            out.append((key, v))
    return out


def cadence_text(f: Facts) -> str | None:
    """How often the run was sampled: the recorded cadence, else the spacing measured from the windows."""
    e = f.every
    if isinstance(e, int) and not isinstance(e, bool):
        text = f"every {e} step{'s' if e != 1 else ''}"
    elif isinstance(e, list) and e:
        text = "schedule " + ", ".join(f"every {x[1]} until step {x[0]}" if x[0] is not None else f"then every {x[1]}"
                                       for x in e if isinstance(x, list) and len(x) == 2)
    elif e is not None:
        text = str(e)
    elif f.spacing is not None:
        return f"every {f.spacing:g} steps (measured from the windows)"
    else:
        return None
    if f.spacing is not None and isinstance(e, int) and abs(f.spacing - e) > 1e-9:
        text += f" (windows measure {f.spacing:g})"
    return text


def setup_line(f: Facts) -> str:
    """The header line: what a reader needs to interpret any number on the page."""
    parts = [f"W = {f.window}" if f.window is not None else None,
             cadence_text(f) and f"sampled {cadence_text(f)}",
             None if f.n_parameters is None else f"{f.n_parameters:,} parameters",
             f.tensors and f"tensors: {f.tensors}",
             f"sketch: {f.sketch}" if f.sketch else "sketch: not recorded",
             f.kstar_rule and f"k* rule: {f.kstar_rule}",
             f"group: {f.group}" if f.groups and f.groups != ["all"] else None]
    where = (f"configuration from {f.config_recorded_in}" if f.config_recorded_in
             else "this input records no configuration (CSV/JSONL tables carry no metadata)")
    return " · ".join(p for p in parts if p) + f" — {where}"


def key_numbers(f: Facts) -> list[tuple[str, Any]]:
    """The table of key numbers of one run (from :class:`~.summary.Facts`): the rows that apply to
    this kind of run (grok, lead and final accuracy only when there is an accuracy to grok; the
    defect onset only with a defect probe; the validation loss and its coupling when logged)."""
    ph = f.phases or {}
    if not ph:
        plateau = None
    elif ph.get("plateau_flat") is False:
        plateau = f"none: R rises through steps {ph['plateau_start']} … {ph['plateau_end']} (ρ = {ph['plateau_trend']:.2f})"
    else:
        plateau = f"steps {ph['plateau_start']} … {ph['plateau_end']}"
    rows: list[tuple[str, Any]] = [
        ("window W", f.window),
        ("windows (rows)", f.n_windows),
        ("steps", None if f.first_step is None else f"{f.first_step} … {f.last_step}"),
        ("sampling", cadence_text(f)),
        ("parameters", None if f.n_parameters is None else f"{f.n_parameters:,}"),
        ("tensors", f.tensors),
        ("k* rule", f.kstar_rule),
        ("modal k*", None if f.modal_k_star is None else f"{f.modal_k_star} ({100 * (f.modal_share or 0):.0f}% of windows)"),
        ("peak gap ratio", None if f.peak_ratio is None else f"{f.peak_ratio:.3f} at step {f.peak_step}"),
        ("plateau", plateau),
    ]
    if f.val_column is not None:
        rows.append((f"validation loss ({f.val_column})", f"{f.val_first:.4g} → {f.val_last:.4g} (lowest {f.val_min:.4g} "
                     f"at step {f.val_min_step})"))
        c = f.coupling or {}
        rows.append(("coupling: peak lag, r", None if c.get("peak_lag") is None else
                     f"{c['peak_lag']:+d} samples of R, r = {c['peak_r']:.2f} (p = {_fmt(c.get('p_perm'))})"))
    if f.backbone_last is not None:
        rows.append(("backbone share", f"{100 * f.backbone_last:.0f}% at step {f.backbone_last_step} "
                     f"({100 * f.backbone_min:.0f}–{100 * f.backbone_max:.0f}% over {f.backbone_probes} probes)"))
    if f.grokking:
        lead = None if f.lead is None else f"{f.lead} steps" + (" (before grokking)" if f.lead > 0 else "")
        rows += [("grok step", f.grok_step if f.grok_step is not None else f.grok_source),
                 ("warning step", f.warning_step if f.warning_step is not None else f.warning_source),
                 ("lead", lead), ("final test accuracy", f.final_test_acc)]
    elif f.warning_step is not None:
        rows.append(("warning step", f"{f.warning_step} ({f.warning_source})"))
    if f.defect_records or f.grokking:
        rows.append(("defect onset (paper rule)", f.defect_onset_step if f.defect_records else "no defect probe"))
    rows += [("sketch", f.sketch or "not recorded"),
             ("JL error (median)", None if f.jl_median is None else f"{100 * f.jl_median:.2f}% over {f.jl_windows} windows")]
    return rows


def render_run(run: RunView, facts: Facts, sections: Sequence[Section]) -> str:
    """The page of one run."""
    findings = "".join(f"<li>{escape(s)}</li>" for s in summary_sentences(facts))
    caveats = "".join(f"<li>{escape(s)}</li>" for s in summary_caveats(facts))
    body = [
        f'<section id="summary"><h2>Summary</h2><ul class="findings">{findings}</ul>'
        + (f'<h3>Caveats</h3><ul class="caveats">{caveats}</ul>' if caveats else "") + "</section>",
        f'<section id="numbers"><h2>Key numbers</h2>{_kv_table(key_numbers(facts))}</section>',
        *(section_html(s) for s in sections),
        _data_section(run, facts),
        _json_block(facts.to_dict(), "se-facts"),
    ]
    nav = [("summary", "Summary"), ("numbers", "Key numbers")] + [(f"fig-{s.key}", s.short) for s in sections]
    nav.append(("data", "Data"))
    return _page(f"Spectral-edge report: {run.label}", str(run.source), body, nav, setup_line(facts))


def _data_section(run: RunView, facts: Facts) -> str:
    files = "".join(f"<li>{escape(k)}: {escape(str(p))}</li>" for k, p in sorted(run.files.items()))
    notes = "".join(f"<li>{escape(n)}</li>" for n in facts.notes)
    parts = [f'<section id="data"><h2>Data</h2><h3>Inputs read</h3><ul>{files}</ul>']
    if notes:
        parts.append(f"<h3>Notes</h3><ul>{notes}</ul>")
    cfg: list[tuple[str, Any]] = []
    if run.data.config:
        cfg += _flat(run.data.config)
    meta = {k: v for k, v in run.meta.items() if k not in ("kind", "step")}
    if meta:
        cfg += _flat(meta, "history.")
    if cfg:
        parts.append(f"<details><summary>Configuration ({len(cfg)} entries)</summary>{_kv_table(cfg[:200])}</details>")
    parts.append("</section>")
    return "".join(parts)


def render_compare(runs: Sequence[RunView], facts: Sequence[Facts], sections: Sequence[Section],
                   colors: Sequence[str]) -> str:
    """The page comparing several runs."""
    head = ("<tr><th>run</th><th>W</th><th>windows</th><th>k* rule</th><th>modal k*</th><th>peak R</th>"
            "<th>peak step</th><th>grok step</th><th>warning step</th><th>lead</th><th>final test acc</th></tr>")
    rows = []
    for f, c in zip(facts, colors):
        cells = [f.window, f.n_windows, f.kstar_rule, f.modal_k_star,
                 None if f.peak_ratio is None else round(f.peak_ratio, 3), f.peak_step, f.grok_step,
                 f.warning_step, f.lead, f.final_test_acc]
        tds = "".join(f'<td class="num">{escape(_fmt(v))}</td>' for v in cells)
        rows.append(f'<tr><td><span class="swatch" style="background:{c}"></span>{escape(f.label)}</td>{tds}</tr>')
    table = f'<table class="runs">{head}{"".join(rows)}</table>'
    notes = ("<p class=\"note\">Lead = grok step − warning step (positive: the warning came first). Modal k* is the "
             "most frequent k* over a run's windows.</p>")
    per_run = "".join(
        f"<details><summary>{escape(f.label)}: findings</summary><ul>"
        + "".join(f"<li>{escape(s)}</li>" for s in summary_sentences(f)) + "</ul></details>"
        for f in facts)
    body = [
        f'<section id="summary"><h2>Summary table</h2>{table}{notes}{per_run}</section>',
        *(section_html(s) for s in sections),
        '<section id="data"><h2>Data</h2><ul>'
        + "".join(f"<li>{escape(r.label)}: {escape(str(r.source))}</li>" for r in runs) + "</ul></section>",
        _json_block([f.to_dict() for f in facts], "se-facts"),
    ]
    nav = [("summary", "Summary")] + [(f"fig-{s.key}", s.short) for s in sections] + [("data", "Data")]
    labels = ", ".join(r.label for r in runs)
    return _page(f"Spectral-edge comparison: {labels}", f"{len(runs)} runs", body, nav)
