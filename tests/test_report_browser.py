"""The report in a real browser: headless Chromium opens the page from a file:// URL, every
figure renders with a non-zero size, nothing is fetched from the network and the console
stays free of errors.

Needs Chromium and the ``playwright`` Python package (no ``playwright install``: the system
browser is used). Chromium is looked up in $SPECTRAL_EDGE_CHROMIUM, then on PATH (chromium,
chromium-browser, google-chrome); without either the test skips with the reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_report import planted_run

from spectral_edge.report import build_comparison, build_report


def _chromium() -> str | None:
    env = os.environ.get("SPECTRAL_EDGE_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs `pip install playwright`")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set SPECTRAL_EDGE_CHROMIUM)")
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=exe, headless=True)
    except Exception as e:  # a browser that cannot start here (sandbox, missing libraries)
        pw.stop()
        pytest.skip(f"Chromium at {exe} did not start: {str(e).splitlines()[0]}")
    yield b
    b.close()
    pw.stop()


def _open(browser, html: Path, screenshot: Path | None = None) -> dict:
    """Load a page; return its console errors, non-file requests and figure boxes."""
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:", "about:")) else None)
    page.goto(html.resolve().as_uri(), wait_until="load")
    boxes = page.evaluate("""() => [...document.querySelectorAll('svg')].map(s => {
        const r = s.getBoundingClientRect();
        return {w: r.width, h: r.height, paths: s.querySelectorAll('path, use').length,
                section: s.closest('section') ? s.closest('section').id : null};
    })""")
    notes = page.evaluate("() => [...document.querySelectorAll('p.note')].map(p => p.textContent)")
    title = page.title()
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return {"errors": errors, "requests": requests, "boxes": boxes, "notes": notes, "title": title}


def test_every_figure_renders_in_chromium(browser, tmp_path):
    extra = [{"kind": "probe", "probe": "jl", "step": s, "jl_error": 0.02} for s in range(1000, 5100, 100)]
    run = planted_run(tmp_path / "full", extra_rows=extra)
    res = _open(browser, build_report(run))
    assert res["errors"] == [] and res["requests"] == []
    assert [b["section"] for b in res["boxes"]] == ["fig-spectrum", "fig-edge", "fig-eval", "fig-warning",
                                                  "fig-coupling", "fig-jl"]
    for b in res["boxes"]:
        assert b["w"] > 300 and b["h"] > 100 and b["paths"] > 5, b
    assert res["title"] == "Spectral-edge report: full" and res["notes"] == []


def test_degenerate_page_and_comparison_render(browser, tmp_path):
    one = planted_run(tmp_path / "one", steps=[3000], evals=False, probes=False, alarm_at=None, grok_at=None)
    res = _open(browser, build_report(one))
    assert res["errors"] == [] and res["requests"] == []
    assert len(res["boxes"]) == 3 and all(b["w"] > 0 and b["h"] > 0 for b in res["boxes"])
    assert len(res["notes"]) == 2  # evaluation and JL: one line each

    a, b = planted_run(tmp_path / "a"), planted_run(tmp_path / "b", alarm_at=None)
    res = _open(browser, build_comparison([a, b], labels="wd 1,wd 0", out=tmp_path / "c.html"))
    assert res["errors"] == [] and res["requests"] == []
    assert len(res["boxes"]) == 4 and all(b["w"] > 300 and b["h"] > 100 for b in res["boxes"])


@pytest.mark.parametrize("kind", ["hf-lm", "lightning", "plain", "grokking"])
def test_each_kind_of_real_run_renders_and_is_screenshotted(browser, tmp_path, kind):
    """The pages of the four real kinds of run (tests/test_report_kinds.py) in Chromium: no
    error, no request, every figure drawn at a readable size, and a full-page screenshot."""
    from test_report_kinds import KINDS

    page = build_report(KINDS[kind](tmp_path / "run"))
    shot = tmp_path / f"{kind}.png"
    res = _open(browser, page, screenshot=shot)
    assert res["errors"] == [] and res["requests"] == []
    sections = [b["section"] for b in res["boxes"]]
    assert {"fig-spectrum", "fig-edge", "fig-eval", "fig-coupling"} <= set(sections), sections
    assert ("fig-warning" in sections) == (kind == "grokking") and ("fig-g23" in sections) == (kind != "grokking")
    for b in res["boxes"]:
        assert b["w"] > 300 and b["h"] > 100 and b["paths"] > 3, b
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
