"""Tasks of the papers, generated from explicit seeds: modular arithmetic (single and multitask),
Dyck-1 depth prediction, SCAN (simple split) and a small character-level language-modelling task.

Nothing here touches a global random number generator, and importing this package does not
import ``datasets`` (only :func:`~spectral_edge.tasks.lm.load_text_corpus` does, when called).
"""

from .dyck import DyckData, dyck_batch, dyck_depths, make_dyck
from .lm import (
    CharTokenizer,
    LMCorpus,
    corpus_from_texts,
    generate_stories,
    lm_batch,
    load_text_corpus,
    make_story_corpus,
)
from .modular import (
    GROKKING_OPERATIONS,
    OPERATIONS,
    ModularData,
    MultitaskModularData,
    make_modular,
    make_multitask_modular,
    modular_labels,
    modular_pairs,
    sample_batch,
)
from .scan import ScanData, ScanVocab, exact_match, interpret, make_scan, scan_commands

__all__ = [
    "CharTokenizer",
    "DyckData",
    "GROKKING_OPERATIONS",
    "LMCorpus",
    "ModularData",
    "MultitaskModularData",
    "OPERATIONS",
    "ScanData",
    "ScanVocab",
    "corpus_from_texts",
    "dyck_batch",
    "dyck_depths",
    "exact_match",
    "generate_stories",
    "interpret",
    "lm_batch",
    "load_text_corpus",
    "make_dyck",
    "make_modular",
    "make_multitask_modular",
    "make_scan",
    "make_story_corpus",
    "modular_labels",
    "modular_pairs",
    "sample_batch",
    "scan_commands",
]
