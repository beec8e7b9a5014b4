"""Reading a report page back: its sections (caption, the text drawn in the figure's SVG, the
note), its header line and its key numbers, so that tests can check every caption and number
against the figure and the data it was built from."""

from __future__ import annotations

import html as _html
import json
import re
from dataclasses import dataclass


@dataclass
class PageSection:
    key: str
    title: str
    caption: str
    drawn: str  # every <text> of the SVG, joined by " | " (legend labels, axis labels, span names)
    note: str
    table: str


def visible(page: str) -> str:
    """The page without its JSON facts block (what a reader sees, as HTML)."""
    i = page.find('<script type="application/json"')
    return page if i < 0 else page[:i]


def facts(page: str) -> dict:
    """The facts the page was built from (its JSON data block)."""
    m = re.search(r'<script type="application/json" id="se-facts">\n(.*?)\n</script>', page, re.S)
    assert m, "no facts block"
    return json.loads(m.group(1).replace("<\\/", "</"))


def sections(page: str) -> dict[str, PageSection]:
    out = {}
    for m in re.finditer(r'<section id="fig-([\w-]+)" class="figure"><h2>(.*?)</h2>(.*?)</section>', page, re.S):
        key, title, body = m.group(1), _html.unescape(m.group(2)), m.group(3)
        svg = re.search(r"<svg.*?</svg>", body, re.S)
        texts = re.findall(r"<text[^>]*>(.*?)</text>", svg.group(0), re.S) if svg else []
        cap = re.search(r"<figcaption>(.*?)</figcaption>", body, re.S)
        note = re.search(r'<p class="note">(.*?)</p>', body, re.S)
        table = re.search(r'<table class="section-table">(.*?)</table>', body, re.S)
        out[key] = PageSection(key, title, _html.unescape(cap.group(1)) if cap else "",
                               " | ".join(_html.unescape(re.sub(r"<[^>]+>", "", t)).strip() for t in texts),
                               _html.unescape(note.group(1)) if note else "",
                               _html.unescape(re.sub(r"<[^>]+>", " ", table.group(1))) if table else "")
    return out


def header_setup(page: str) -> str:
    m = re.search(r'<p class="setup">(.*?)</p>', page, re.S)
    return _html.unescape(m.group(1)) if m else ""


def key_numbers(page: str) -> dict[str, str]:
    m = re.search(r'<section id="numbers">.*?<table>(.*?)</table>', page, re.S)
    assert m, "no key-numbers table"
    rows = re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", m.group(1), re.S)
    return {_html.unescape(k): _html.unescape(v) for k, v in rows}


def check_captions_follow_figures(page: str) -> dict[str, PageSection]:
    """Every caption names only lines its figure drew, and every mark drawn is in the caption:
    the grok step, alarms, the warning step, the accuracy-0.9 line, the phase spans, each
    evaluation series. Returns the sections."""
    secs = sections(page)
    for s in secs.values():
        if not s.drawn:
            continue
        grok = re.search(r"grok step (\d+)", s.drawn)
        assert ("green dashed: the grok step" in s.caption.lower()) == bool(grok), (s.key, s.caption, s.drawn)
        if grok:
            assert f"grok step {grok.group(1)}" in s.caption, (s.key, s.caption)
        assert ("alarm" in s.caption.lower()) == ("alarm" in s.drawn), (s.key, s.caption, s.drawn)
        assert ("red dotted: the warning step" in s.caption.lower()) == bool(re.search(r"warning \d+", s.drawn)), s.key
    if "eval" in secs and secs["eval"].drawn:
        e = secs["eval"]
        for col in re.findall(r"(\w+ (?:loss|acc|accuracy)|\bloss\b) \((?:dashed|solid)\)", e.caption):
            assert col in e.drawn, (col, e.drawn)
        labels = [t for t in e.drawn.split(" | ") if re.fullmatch(r"(train|test|val|eval) (loss|acc|accuracy)|loss", t)]
        for lab in labels:
            assert f"{lab} (" in e.caption, (lab, e.caption)
        assert ("accuracy 0.9" in e.caption) == ("accuracy" in e.drawn and facts(page)["grokking"]), e.caption
    if "edge" in secs and secs["edge"].drawn:
        e = secs["edge"]
        for span in ("rise", "plateau", "collapse", "still rising"):
            drawn = span in e.drawn.split(" | ")
            assert (f"{span} (" in e.caption or f"{span}," in e.caption) == drawn, (span, e.caption, e.drawn)
    return secs
