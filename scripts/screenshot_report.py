#!/usr/bin/env python
"""Make ``docs/report.png``: a screenshot of a spectral-edge report in headless Chromium.

Without ``--source`` it first makes a real run to report on: a small MLP learning modular
addition (p = 31, 60% of the pairs for training, AdamW, weight decay 1), trained 1,200
full-batch steps under the :class:`~spectral_edge.monitor.Monitor` (exact windows, W = 10,
a sample every 20 steps), with a commutator-defect probe, the paper's onset rule as the
alarm detector, and the runner's files (``eval.csv``, ``summary.json``, ``config.json``).
It groks (test accuracy ≥ 0.9) after roughly 700 steps; about a minute on 2 shared CPU cores.
The README's picture is made from the demo instead (``spectral-edge demo``, then
``--source spectral-edge-demo/``); the built-in run is for trying the report without it.

Usage::

    python scripts/screenshot_report.py                          # train, report, screenshot
    python scripts/screenshot_report.py --source spectral-edge-demo/             # the README's picture
    python scripts/screenshot_report.py --source runs/add-wd1/ --out docs/report.png --keep report.html

Needs Chromium (Debian: ``apt-get install chromium``) and ``pip install playwright``; the
browser binary is given with ``--chromium`` (default /usr/bin/chromium), no ``playwright
install`` needed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from spectral_edge.monitor import Monitor
from spectral_edge.probes.base import Probe
from spectral_edge.report import build_report

P, TRAIN_FRACTION, STEPS, EVERY = 31, 0.6, 1200, 20


class _Mlp(torch.nn.Module):
    """Embed a and b, concatenate, one hidden ReLU layer, logits over p classes."""

    def __init__(self, p: int, d: int = 32, hidden: int = 128):
        super().__init__()
        self.emb = torch.nn.Embedding(p, d)
        self.l1 = torch.nn.Linear(2 * d, hidden)
        self.l2 = torch.nn.Linear(hidden, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (n, 2) → (n, p)
        return self.l2(torch.relu(self.l1(torch.cat([self.emb(x[:, 0]), self.emb(x[:, 1])], 1))))


class DefectProbe(Probe):
    """Commutator defect D = ‖θ_AB − θ_BA‖ / (‖η g_A‖·‖η g_B‖) of two plain SGD steps on
    minibatches A, B (METHODS §6), median over ``k`` draws, in float64 (θ_AB − θ_BA is of
    order η², below float32 resolution late in training). Works on detached copies of the
    parameters through ``torch.func.functional_call`` and its own generator: the model, the
    optimizer and the global RNG are untouched. Cost: 4k gradient evaluations."""

    name = "defect"

    def __init__(self, X: torch.Tensor, y: torch.Tensor, every: int = EVERY, batch: int = 256, eta: float = 1e-3,
                 k: int = 3, seed: int = 0):
        super().__init__(every)
        self.X, self.y, self.batch, self.eta, self.k, self.seed = X, y, batch, eta, k, seed

    def _grad(self, model: torch.nn.Module, theta: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
        params = {n: t.detach().requires_grad_(True) for n, t in theta.items()}
        loss = torch.nn.functional.cross_entropy(torch.func.functional_call(model, params, (self.X[idx],)), self.y[idx])
        grads = torch.autograd.grad(loss, list(params.values()))
        return dict(zip(params, grads))

    def run(self, monitor: Monitor, step: int) -> dict[str, float]:
        model = monitor.model
        theta = {n: p.detach().double() for n, p in model.named_parameters()}  # float64: D is an O(η²) difference
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        vals = []
        for _ in range(self.k):
            A = torch.randint(0, len(self.X), (self.batch,), generator=gen)
            B = torch.randint(0, len(self.X), (self.batch,), generator=gen)
            gA, gB = self._grad(model, theta, A), self._grad(model, theta, B)
            tA = {n: theta[n] - self.eta * gA[n] for n in theta}
            tB = {n: theta[n] - self.eta * gB[n] for n in theta}
            gBA, gAB = self._grad(model, tA, B), self._grad(model, tB, A)
            diff = torch.sqrt(sum(((tA[n] - self.eta * gBA[n]) - (tB[n] - self.eta * gAB[n])).pow(2).sum() for n in theta))
            na = self.eta * torch.sqrt(sum(g.pow(2).sum() for g in gA.values()))
            nb = self.eta * torch.sqrt(sum(g.pow(2).sum() for g in gB.values()))
            vals.append(float(diff / (na * nb)))
        return {"defect": float(torch.tensor(vals).median()), "samples": self.k}


class OnsetAlarm:
    """The paper's onset rule on the defect probe: baseline = max(median of the first 3
    values, 0.1); alarm at the first record (index ≥ 2) with D > 10·baseline and D > 20."""

    name = "defect_onset"

    def __init__(self) -> None:
        self.values: list[float] = []
        self.fired = False

    def update(self, rows):
        events = []
        for r in rows:
            if r.get("kind") != "probe" or r.get("probe") != "defect" or self.fired:
                continue
            self.values.append(float(r["defect"]))
            if len(self.values) >= 3:
                base = max(sorted(self.values[:3])[1], 0.1)
                d = self.values[-1]
                if d > 10 * base and d > 20:
                    self.fired = True
                    events.append({"step": r["step"], "event": "alarm", "detector": self.name,
                                   "reason": f"defect {d:.3g} > 10 × baseline {base:.3g} and > 20"})
        return events


def make_run(folder: Path) -> Path:
    """Train the small model described in the module docs into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    X = torch.stack([a.reshape(-1), b.reshape(-1)], 1)
    y = (X[:, 0] + X[:, 1]) % P
    perm = torch.randperm(len(X))
    n = int(TRAIN_FRACTION * len(X))
    tr, te = perm[:n], perm[n:]
    model = _Mlp(P)
    cfg = {"task": "modular addition", "p": P, "train_fraction": TRAIN_FRACTION, "model": "MLP d=32 hidden=128",
           "optimizer": "AdamW", "lr": 1e-2, "weight_decay": 1.0, "betas": [0.9, 0.98], "steps": STEPS,
           "every": EVERY, "seed": 0}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], betas=(0.9, 0.98))
    mon = Monitor(model, windows=(10,), every=EVERY, history=folder / "history.jsonl",
                  probes=[DefectProbe(X[tr], y[tr])], detectors=[OnsetAlarm()])
    handle = mon.attach(opt)
    evals = []
    for step in range(1, STEPS + 1):
        loss = torch.nn.functional.cross_entropy(model(X[tr]), y[tr])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % EVERY == 0:
            with torch.no_grad():
                lt, lv = model(X[tr]), model(X[te])
                evals.append((step, torch.nn.functional.cross_entropy(lt, y[tr]).item(),
                              (lt.argmax(1) == y[tr]).float().mean().item(),
                              torch.nn.functional.cross_entropy(lv, y[te]).item(),
                              (lv.argmax(1) == y[te]).float().mean().item()))
    handle.remove()
    mon.close()
    with open(folder / "eval.csv", "w") as f:
        f.write("step,train_loss,train_acc,test_loss,test_acc\n")
        f.writelines(",".join(f"{v:.6g}" for v in row) + "\n" for row in evals)
    grok = next((s for s, *_, acc in evals if acc >= 0.9), None)
    alarms = [r["step"] for r in mon.rows if r["kind"] == "event" and r.get("event") == "alarm"]
    summary = {"grok_step": grok, "warning_step": alarms[0] if alarms else None, "final_test_acc": evals[-1][-1],
               "history": "history.jsonl"}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    return folder


def screenshot(html: Path, png: Path, chromium: str, width: int = 1100) -> None:
    """Full-page screenshot of ``html`` opened from its file:// URL."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(html.resolve().as_uri())
            png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, help="an existing run folder, history or table (default: make a run)")
    ap.add_argument("--run-dir", type=Path, help="where to make the run (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=Path("docs/report.png"), help="the PNG to write")
    ap.add_argument("--keep", type=Path, help="also keep the HTML report here")
    ap.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    ap.add_argument("--width", type=int, default=1100, help="viewport width in CSS pixels")
    args = ap.parse_args(argv)
    if shutil.which(args.chromium) is None and not Path(args.chromium).is_file():
        print(f"no Chromium at {args.chromium} (apt-get install chromium, or pass --chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or make_run(args.run_dir or Path(tmp) / "modular-add-wd1")
        html = build_report(source, out=args.keep or Path(tmp) / "report.html")
        screenshot(html, args.out, args.chromium, args.width)
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
