"""docs/reliability.md lists every case of the bad-input corpus, and every test it cites exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
CORPUS = sorted(p.stem for p in (ROOT / "tests").glob("test_badinput_*.py"))


@pytest.mark.parametrize("module", CORPUS)
def test_every_corpus_case_is_in_the_document(module):
    from badinput import Case

    mod = importlib.import_module(module)
    ids = {c.id for v in vars(mod).values() if isinstance(v, list) for c in v if isinstance(c, Case)}
    assert ids, module
    missing = sorted(i for i in ids if f"| `{i}` |" not in DOC)
    assert not missing, f"regenerate with: python scripts/reliability_table.py --write docs/reliability.md ({missing})"


def test_every_cited_test_exists():
    cited = set(re.findall(r"`(tests/test_\w+\.py)::(\w+)`", DOC))
    assert len(cited) >= 8
    for path, name in cited:
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), (path, name)
