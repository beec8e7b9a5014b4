"""SCAN (Lake & Baroni, 2018), generated from its phrase-structure grammar and semantics.

Grammar (every command is a C)::

    C -> S and S | S after S | S
    S -> V twice | V thrice | V
    V -> D opposite R | D around R | D | U          (D here is a U or "turn"; R: left/right)
    D -> U left | U right | turn left | turn right
    U -> walk | look | run | jump

Meaning (⟦·⟧ maps to actions I_WALK, I_LOOK, I_RUN, I_JUMP, I_TURN_LEFT, I_TURN_RIGHT)::

    ⟦u⟧ = I_U                 ⟦turn r⟧ = T_r             ⟦u r⟧ = T_r I_U
    ⟦x opposite r⟧ = T_r T_r ⟦x⟧     (⟦turn opposite r⟧ = T_r T_r)
    ⟦x around r⟧  = (T_r ⟦x⟧) × 4    (⟦turn around r⟧ = T_r × 4)
    ⟦v twice⟧ = ⟦v⟧ ⟦v⟧       ⟦v thrice⟧ = ⟦v⟧ ⟦v⟧ ⟦v⟧
    ⟦s1 and s2⟧ = ⟦s1⟧ ⟦s2⟧  ⟦s1 after s2⟧ = ⟦s2⟧ ⟦s1⟧

There are 34 V phrases, 102 S phrases and 102 + 2·102² = 20,910 commands. The "simple"
split is a random 80/20 split of all commands (16,728 / 4,182, the sizes of the published
files); the papers train on a seeded subset of 2,048 training commands and evaluate on
(a subset of) the test commands.

Encoding: source = command words, right-padded with PAD = 0 (length 9 at most). Target
vocabulary: PAD = 0, SOS = 1, EOS = 2, then the six actions. The decoder reads
``[SOS] + actions`` and is trained to emit ``actions + [EOS]``; padded targets are
``IGNORE_INDEX`` = −100. The longest action sequence has 48 actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError

__all__ = [
    "PRIMITIVES",
    "ACTIONS",
    "COMMAND_WORDS",
    "PAD",
    "SOS",
    "EOS",
    "IGNORE_INDEX",
    "N_COMMANDS",
    "ScanVocab",
    "ScanData",
    "scan_commands",
    "interpret",
    "make_scan",
    "encode_scan",
    "exact_match",
]

PRIMITIVES: tuple[str, ...] = ("walk", "look", "run", "jump")
ACTIONS: tuple[str, ...] = ("I_WALK", "I_LOOK", "I_RUN", "I_JUMP", "I_TURN_LEFT", "I_TURN_RIGHT")
COMMAND_WORDS: tuple[str, ...] = PRIMITIVES + (
    "turn", "left", "right", "opposite", "around", "twice", "thrice", "and", "after")
PAD, SOS, EOS = 0, 1, 2  # special ids (PAD is shared by source and target vocabularies)
IGNORE_INDEX = -100
N_COMMANDS = 20910

_TURN = {"left": "I_TURN_LEFT", "right": "I_TURN_RIGHT"}
_ACT = {u: f"I_{u.upper()}" for u in PRIMITIVES}


def _v_phrases() -> list[str]:
    """All 34 V phrases: U, D (u/turn + direction), and u/turn opposite|around direction."""
    out = list(PRIMITIVES)
    for x in PRIMITIVES + ("turn",):
        for r in ("left", "right"):
            out.append(f"{x} {r}")
    for x in PRIMITIVES + ("turn",):
        for mod in ("opposite", "around"):
            for r in ("left", "right"):
                out.append(f"{x} {mod} {r}")
    return out


def scan_commands() -> list[str]:
    """Every SCAN command once, in a fixed order (S phrases, then 'S and S', then 'S after S')."""
    s = [f"{v}{rep}" for v in _v_phrases() for rep in ("", " twice", " thrice")]
    return s + [f"{a} {conj} {b}" for conj in ("and", "after") for a in s for b in s]


def _interpret_v(words: list[str]) -> list[str]:
    """⟦V⟧ for the words of one V phrase."""
    x = words[0] if words else ""
    if x not in _ACT and x != "turn" or (x == "turn" and len(words) == 1):
        raise ConfigError(f"not a SCAN verb phrase: {' '.join(words)!r}")
    base = [] if x == "turn" else [_ACT[x]]
    if len(words) == 1:
        return base
    if len(words) == 2 and words[1] in _TURN:
        return [_TURN[words[1]]] + base
    if len(words) == 3 and words[2] in _TURN and words[1] in ("opposite", "around"):
        t = _TURN[words[2]]
        return [t, t] + base if words[1] == "opposite" else ([t] + base) * 4
    raise ConfigError(f"not a SCAN verb phrase: {' '.join(words)!r}")


def _interpret_s(words: list[str]) -> list[str]:
    """⟦S⟧: a V phrase optionally followed by twice/thrice."""
    reps = {"twice": 2, "thrice": 3}.get(words[-1] if words else "", 1)
    return _interpret_v(words[:-1] if reps > 1 else words) * reps


def interpret(command: str) -> str:
    """The action sequence ⟦command⟧ as space-separated action tokens."""
    words = command.split()
    for conj in ("and", "after"):
        if conj in words:
            i = words.index(conj)
            first, second = _interpret_s(words[:i]), _interpret_s(words[i + 1:])
            return " ".join(first + second if conj == "and" else second + first)
    return " ".join(_interpret_s(words))


@dataclass(frozen=True)
class ScanVocab:
    """Token ids: source PAD + command words; target PAD, SOS, EOS + actions."""

    src_tokens: tuple[str, ...] = ("<PAD>",) + COMMAND_WORDS
    tgt_tokens: tuple[str, ...] = ("<PAD>", "<SOS>", "<EOS>") + ACTIONS
    _src: dict[str, int] = field(init=False, repr=False, compare=False)
    _tgt: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_src", {w: i for i, w in enumerate(self.src_tokens)})
        object.__setattr__(self, "_tgt", {w: i for i, w in enumerate(self.tgt_tokens)})

    def encode_command(self, command: str) -> list[int]:
        """Source ids of the command's words."""
        return [self._src[w] for w in command.split()]

    def encode_actions(self, actions: str) -> list[int]:
        """Target ids of the actions (no SOS/EOS)."""
        return [self._tgt[a] for a in actions.split()]

    def decode_actions(self, ids: list[int] | torch.Tensor) -> str:
        """Actions of target ids, stopping at the first EOS and skipping PAD/SOS."""
        out = []
        for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            if i == EOS:
                break
            if i > EOS:
                out.append(self.tgt_tokens[i])
        return " ".join(out)


@dataclass(frozen=True)
class ScanData:
    """Encoded SCAN split: src (N, S), decoder input tgt_in (N, T) = SOS+actions, tgt_out (N, T) = actions+EOS."""

    train_src: torch.Tensor  # (N_train, max_src_len) int64, PAD on the right
    train_tgt_in: torch.Tensor  # (N_train, max_tgt_len) int64
    train_tgt_out: torch.Tensor  # (N_train, max_tgt_len) int64, IGNORE_INDEX on padding
    test_src: torch.Tensor  # (N_test, max_src_len)
    test_tgt_in: torch.Tensor  # (N_test, max_tgt_len)
    test_tgt_out: torch.Tensor  # (N_test, max_tgt_len)
    train_commands: tuple[str, ...]
    test_commands: tuple[str, ...]
    vocab: ScanVocab
    seed: int


def encode_scan(commands: list[str], vocab: ScanVocab, max_src_len: int = 9,
                max_tgt_len: int = 49) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src (N, max_src_len), tgt_in (N, max_tgt_len), tgt_out (N, max_tgt_len)) for the commands."""
    n = len(commands)
    src = torch.full((n, max_src_len), PAD, dtype=torch.long)  # (N, S)
    tin = torch.full((n, max_tgt_len), PAD, dtype=torch.long)  # (N, T)
    tout = torch.full((n, max_tgt_len), IGNORE_INDEX, dtype=torch.long)  # (N, T)
    for i, c in enumerate(commands):
        s, a = vocab.encode_command(c), vocab.encode_actions(interpret(c))
        if len(s) > max_src_len or len(a) + 1 > max_tgt_len:
            raise ConfigError(f"command {c!r} does not fit max_src_len={max_src_len}, max_tgt_len={max_tgt_len}")
        src[i, : len(s)] = torch.tensor(s)
        tin[i, : len(a) + 1] = torch.tensor([SOS] + a)
        tout[i, : len(a) + 1] = torch.tensor(a + [EOS])
    return src, tin, tout


def make_scan(n_train: int | None = 2048, n_test: int | None = None, train_frac: float = 0.8,
              seed: int = 0) -> ScanData:
    """Simple split: seeded 80/20 split of all 20,910 commands, then n_train (n_test) drawn from each side."""
    if not 0.0 < train_frac < 1.0:
        raise ConfigError(f"train_frac must lie in (0, 1), got {train_frac}")
    cmds = scan_commands()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(cmds))
    cut = int(train_frac * len(cmds))
    train_idx, test_idx = perm[:cut], perm[cut:]
    if n_train is not None:
        if not 0 < n_train <= len(train_idx):
            raise ConfigError(f"n_train must lie in 1..{len(train_idx)}, got {n_train}")
        train_idx = train_idx[rng.permutation(len(train_idx))[:n_train]]
    if n_test is not None:
        if not 0 < n_test <= len(test_idx):
            raise ConfigError(f"n_test must lie in 1..{len(test_idx)}, got {n_test}")
        test_idx = test_idx[rng.permutation(len(test_idx))[:n_test]]
    vocab = ScanVocab()
    tr = [cmds[i] for i in train_idx]
    te = [cmds[i] for i in test_idx]
    return ScanData(*encode_scan(tr, vocab), *encode_scan(te, vocab), tuple(tr), tuple(te), vocab, seed)


def exact_match(pred: torch.Tensor, tgt_out: torch.Tensor) -> torch.Tensor:
    """Per-sequence exact match (N,) bool: pred ids (N, L) agree with tgt_out up to and including EOS."""
    n, T = tgt_out.shape
    L = pred.shape[1]
    if L < T:
        pred = torch.cat([pred, torch.full((n, T - L), PAD, dtype=pred.dtype, device=pred.device)], 1)
    mask = tgt_out != IGNORE_INDEX  # (N, T)
    ok = (pred[:, :T] == tgt_out) | ~mask  # (N, T)
    return ok.all(dim=1)  # (N,)
