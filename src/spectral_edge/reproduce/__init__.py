"""Reproductions of the papers' studies: plans → measures → claims → figures and documents.

``spectral-edge reproduce trajectories`` and ``spectral-edge reproduce grokking`` call the two
drivers, :func:`reproduce_trajectories` and :func:`reproduce_grokking`; each trains what is
missing (resumable), measures the runs, judges the papers' claims and rewrites its document
(``docs/trajectories.md``, ``docs/grokking.md``).

Modules, one job each:

- :mod:`.plans`      what to train: scales, run configs and names, the run list of each study
  (:func:`study_plan`) and of the grokking suite (:func:`grokking_plan`);
- :mod:`.measures`   what the runs show: per-run measurements (k*, phases, coupling, backbone,
  JL errors, each grokking run's signals and detector leads) and their aggregation over a study,
  as plain JSON-safe records: no verdicts, no text;
- :mod:`.claims`     what the records mean for the papers: one small function per claim, which
  decides the verdict and carries the sentence stating its rule, both built from the same
  constants, so the document's prose cannot drift from the code that applies it;
- :mod:`.formatting` how a number or a table is written, shared by claims and documents;
- :mod:`.figures`    one PNG per trajectory study (matplotlib imported inside the functions);
- :mod:`.documents`  the Markdown pages, one small function per section;
- :mod:`.modes_measures`, :mod:`.modes_claims`, :mod:`.modes_documents`: the same three jobs for
  the functional-modes reproduction (``spectral-edge reproduce modes`` → ``docs/modes.md``);
- :mod:`.interventions` (plan, measures, verdicts) and :mod:`.interventions_documents` (document,
  figures, driver): ``spectral-edge reproduce interventions`` → ``docs/interventions.md``;
- :mod:`.run`        the drivers that chain the above.

Why this split: the measurements, the verdicts and the prose used to live in one long module per
reproduction, and each verdict rule was written twice (in the code and in the document's text).
Now each job can be read and tested alone (a claim on a hand-made record, a document from a
saved ``results.json``), and the imports go one way only: plans ← measures ← claims ←
figures/documents ← run. numpy, pandas, matplotlib and torch are imported inside functions;
names here are imported lazily, so ``import spectral_edge.reproduce`` costs nothing.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

__all__, __getattr__, __dir__ = lazy_attributes(__name__, {
    "run": ("reproduce_trajectories", "reproduce_grokking", "reproduce_modes", "analyse"),
    "interventions_documents": ("reproduce_interventions",),
    "plans": ("STUDIES", "SCALES", "Scale", "get_scale", "study_plan", "StudyPlan", "grokking_plan"),
    "claims": ("Claim", "claims_table", "grokking_claims_table", "REPRODUCED", "PARTLY", "NOT_REPRODUCED",
               "NOT_TESTABLE"),
    "documents": ("render_document",),
    "alarm_documents": ("write_grokking_doc",),
    "alarm_study": ("alarm_study",),
}, submodules=("plans", "measures", "claims", "formatting", "figures", "documents", "modes_measures", "modes_claims",
               "modes_documents", "run", "interventions", "interventions_documents"))
