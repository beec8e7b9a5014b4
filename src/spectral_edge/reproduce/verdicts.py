"""Verdict words and the claims-table row (:class:`Claim`) shared by every claims module."""

from __future__ import annotations

from dataclasses import dataclass

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "partly", "not reproduced", "not testable here"


@dataclass(frozen=True)
class Claim:
    """One row of the claims table: the papers' statement and setup, ours, and the verdict."""

    key: str
    claim: str
    paper_setup: str
    ours: str
    our_setup: str
    verdict: str
    why: str
    #: whether this test could have refuted the claim, and why (empty: not assessed)
    strength: str = ""
