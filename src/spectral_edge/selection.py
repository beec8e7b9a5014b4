"""Which parameters are analysed, and in which groups (METHODS.md §1).

A :class:`Selection` is a pure description: include/exclude name patterns, a grouping,
and whether buffers count. Patterns are shell globs (``*attn*``) or regular expressions
with a ``re:`` prefix (``re:.*\\.(q|k|v)_proj\\.weight``); both match the whole name.
Presets name common choices: ``attention`` (W_Q, W_K, W_V, W_O of every layer, the
grokking analyses' choice), ``trunk`` (everything but embeddings and the output head, the
language-model one).

Names are normalised first: wrapper prefixes that DDP, FSDP, ``torch.compile`` and
activation checkpointing add (``module.``, ``_orig_mod.``, ``_fsdp_wrapped_module.``,
``_checkpoint_wrapped_module.``) are stripped, so a live model and its saved checkpoints
select, group and sketch identically.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from .errors import ConfigError

_WRAPPER_SEGMENTS = frozenset({"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"})

#: Names of non-parameter buffers commonly found in state dicts (skipped unless asked for).
BUFFER_PATTERNS: tuple[str, ...] = (
    "*running_mean",
    "*running_var",
    "*num_batches_tracked",
    "*.attn.bias",  # GPT-2 / nanoGPT causal mask (not c_attn.bias, a real parameter)
    "*.attn.masked_bias",
    "*inv_freq",
    "*position_ids",
    "*causal_mask",
    "*attn_mask",
)

_ATTENTION = (
    r"re:.*(attn|attention).*\.(q|k|v|o|query|key|value|out|q_proj|k_proj|v_proj|o_proj|out_proj|c_attn|c_proj|in_proj|qkv|wq|wk|wv|wo)(\.weight|_weight)?",
    r"re:.*(attn|attention).*\.(in_proj_weight|out_proj\.weight)",
    r"re:.*\.(W_Q|W_K|W_V|W_O)",
)
_EMBEDDINGS = (
    "*embed*",
    "*wte*",
    "*wpe*",
    "*lm_head*",
    "*tok_emb*",
    "*pos_emb*",
    "*head.weight",
    "*heads.*",
)
PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "all": ((), ()),
    "attention": (_ATTENTION, ()),
    "trunk": ((), _EMBEDDINGS),
}

_LAYER_RE = re.compile(r"(?:^|\.)(?:layers?|h|blocks?|encoder\.layers?|decoder\.layers?|transformer\.h)\.(\d+)\.")
GROUP_MODES = ("none", "layer", "matrix")


def normalize_name(name: str) -> str:
    """Strip wrapper segments: a leading ``module.`` (DDP), and ``_orig_mod.``,
    ``_fsdp_wrapped_module.``, ``_checkpoint_wrapped_module.`` anywhere."""
    parts = [p for p in name.split(".") if p not in _WRAPPER_SEGMENTS]
    while len(parts) > 1 and parts[0] == "module":
        parts = parts[1:]
    return ".".join(parts)


def _compile(pattern: str) -> re.Pattern[str]:
    if pattern.startswith("re:"):
        try:
            return re.compile(pattern[3:])
        except re.error as e:
            raise ConfigError(f"bad regular expression {pattern[3:]!r}: {e}") from None
    if not pattern:
        raise ConfigError("empty name pattern")
    return re.compile(fnmatch.translate(pattern))


@dataclass(frozen=True)
class Selection:
    """Include/exclude patterns, grouping, and buffer policy (see module docs).

    ``group_by``: ``none`` (one group, ``all``), ``layer`` (``layer.<i>`` from the first
    ``layers.<i>.``/``h.<i>.``/``blocks.<i>.`` in the name; everything else ``other``),
    ``matrix`` (one group per tensor), or ``re:<regex>`` whose first capture group names the
    group (names that do not match go to ``other``). The ``all`` group is always analysed too.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    preset: str = "all"
    group_by: str = "none"
    include_buffers: bool = False
    _inc: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _exc: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _buf: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _grp: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        p_inc, p_exc = PRESETS[self.preset]
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "_inc", tuple(_compile(p) for p in (*p_inc, *self.include)))
        object.__setattr__(self, "_exc", tuple(_compile(p) for p in (*p_exc, *self.exclude)))
        object.__setattr__(self, "_buf", tuple(_compile(p) for p in BUFFER_PATTERNS))
        grp = None
        if self.group_by.startswith("re:"):
            grp = _compile(self.group_by)
            if grp.groups < 1:
                raise ConfigError(f"group pattern {self.group_by!r} needs a capture group, e.g. 're:(.*)\\.weight'")
        elif self.group_by not in GROUP_MODES:
            raise ConfigError(f"unknown grouping {self.group_by!r}; choose none, layer, matrix or re:<regex>")
        object.__setattr__(self, "_grp", grp)

    def is_buffer_name(self, name: str) -> bool:
        return any(p.fullmatch(name) for p in self._buf)

    def selects(self, name: str, dtype: torch.dtype | None = None) -> bool:
        """True if tensor ``name`` (already normalised) is analysed."""
        if dtype is not None and not dtype.is_floating_point:
            return False
        if not self.include_buffers and self.is_buffer_name(name):
            return False
        if self._inc and not any(p.fullmatch(name) for p in self._inc):
            return False
        return not any(p.fullmatch(name) for p in self._exc)

    def group_of(self, name: str) -> str:
        """The group a selected tensor belongs to (``all`` when not grouping)."""
        if self.group_by == "none":
            return "all"
        if self.group_by == "matrix":
            return name
        if self.group_by == "layer":
            m = _LAYER_RE.search(name)
            return f"layer.{int(m.group(1))}" if m else "other"
        assert self._grp is not None
        m = self._grp.fullmatch(name) or self._grp.search(name)
        return m.group(1) if m and m.group(1) is not None else "other"

    def plan(self, names: Iterable[tuple[str, torch.dtype | None]]) -> "Plan":
        """Apply to (name, dtype) pairs in order; raise if nothing is selected."""
        chosen: list[str] = []
        groups: dict[str, list[str]] = {}
        seen = []
        for name, dtype in names:
            seen.append(name)
            if self.selects(name, dtype):
                chosen.append(name)
                groups.setdefault(self.group_of(name), []).append(name)
        if not chosen:
            shown = ", ".join(seen[:6]) + (" ..." if len(seen) > 6 else "")
            raise ConfigError(
                f"the parameter selection (preset={self.preset}, include={list(self.include)}, "
                f"exclude={list(self.exclude)}) matches none of the {len(seen)} tensors ({shown})"
            )
        return Plan(tuple(chosen), {g: tuple(v) for g, v in groups.items()})


@dataclass(frozen=True)
class Plan:
    """The result of a selection on a concrete set of names: ordered names and groups."""

    names: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]

    def group_names(self) -> list[str]:
        """``all`` first, then the other groups in order of first appearance."""
        return ["all"] + [g for g in self.groups if g != "all"]

    def group_of(self) -> dict[str, str]:
        return {n: g for g, names in self.groups.items() for n in names}


def dedupe_names(names: Sequence[str]) -> list[str]:
    """Normalised names must stay unique; raise with both originals otherwise."""
    seen: dict[str, str] = {}
    for n in names:
        k = normalize_name(n)
        if k in seen:
            raise ConfigError(f"tensors {seen[k]!r} and {n!r} have the same name once wrapper prefixes are removed")
        seen[k] = n
    return list(seen)
