"""Hugging Face Hub revisions as a trajectory: ``hf://org/name`` with ``--revisions``.

Checkpoint suites such as Pythia publish one revision (a branch) per checkpoint,
``step0 … step143000``, each holding one model (``model.safetensors``, a sharded index, or
``pytorch_model.bin``). :func:`revision_refs` turns a repository and a ``--revisions``
selection into one :class:`~.remote.RemoteRef` per revision, its step read from the
revision name (the rules of :func:`~.checkpoints.name_step`: ``step1000`` → 1000).

``--revisions`` (:func:`expand_revisions`) takes, repeated or comma-separated:

- names: ``step1000,step2000``;
- brace ranges and lists, as a shell expands them: ``step{0..143000..1000}``,
  ``step{1,2,4,8}``, several groups multiply;
- ``re:<regex>``: every ref (branch or tag) of the repository whose whole name matches.

The refs are listed with ``huggingface_hub`` (``HfApi.list_repo_refs``; ``HF_TOKEN`` for private
repositories) and every named revision must exist. Each revision is read at its commit hash,
so a branch that moves during a run cannot mix two models. With ``HF_HUB_OFFLINE=1`` nothing
is fetched: the refs and files come from the local cache (``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``), laid out as the Hub client writes it
(``models--org--name/refs/<revision>`` holding the commit, ``snapshots/<commit>/<files>``),
and read as local files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import CheckpointError, ConfigError
from .checkpoints import CheckpointRef, name_step
from .remote import RemoteRef

__all__ = ["expand_revisions", "hub_cache", "hub_offline", "list_refs", "local_revision_folder", "parse_hf_url",
           "revision_refs"]

_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?")
#: most revisions one brace pattern may expand to (a typo such as {0..143000..1} is refused)
MAX_REVISIONS = 100_000


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache() -> Path:
    """The Hub cache folder: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def parse_hf_url(url: str) -> tuple[str, str | None, str]:
    """``hf://org/name[@revision][/sub/folder]`` → (repo id, revision or None, sub-folder)."""
    rest = url.split("://", 1)[1].strip("/")
    if rest.startswith(("datasets/", "spaces/")):
        raise ConfigError(f"{url}: only model repositories are read (hf://org/name), not datasets or spaces")
    parts = rest.split("/")
    repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
    revision = None
    if "@" in repo:
        repo, _, revision = repo.partition("@")
        if "/" in revision:  # hf://name@rev/sub with a one-part repo id
            revision, _, more = revision.partition("/")
            sub = f"{more}/{sub}".strip("/")
    if not _REPO.fullmatch(repo) or "--" in repo or ".." in repo:
        raise ConfigError(f"{url}: not a Hugging Face model address; write hf://<org>/<name>")
    return repo, revision or None, sub


def expand_revisions(values: Sequence[str]) -> tuple[list[str], list[re.Pattern[str]]]:
    """``--revisions`` values → (names in the order given, regexes). See the module docs."""
    names: list[str] = []
    patterns: list[re.Pattern[str]] = []
    for value in values:
        value = str(value).strip()
        if value.startswith("re:"):
            try:
                patterns.append(re.compile(value[3:]))
            except re.error as e:
                raise ConfigError(f"--revisions {value!r}: not a valid regular expression ({e})") from None
            continue
        for part in _split_commas(value):
            names += _expand_braces(part, value)
    if not names and not patterns:
        raise ConfigError(f"--revisions {' '.join(map(repr, values))}: names no revision (e.g. step1000,step2000, "
                          "'step{0..143000..1000}' or 're:step\\d+')")
    return list(dict.fromkeys(names)), patterns


def _split_commas(text: str) -> list[str]:
    """Split at commas outside braces."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


def _expand_braces(text: str, whole: str) -> list[str]:
    if text.count("{") != text.count("}"):
        raise ConfigError(f"--revisions {whole!r}: unbalanced braces in {text!r}")
    m = _BRACE.search(text)
    if m is None:
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", text):
            raise ConfigError(f"--revisions {whole!r}: {text!r} is not a revision name (letters, digits, . _ - /), a "
                              "brace pattern such as step{0..1000..100}, or re:<regex>")
        return [text]
    body, head, tail = m.group(1), text[: m.start()], text[m.end():]
    r = _RANGE.fullmatch(body)
    if r:
        a, b, s = int(r.group(1)), int(r.group(2)), int(r.group(3) or 1)
        if s <= 0:
            raise ConfigError(f"--revisions {whole!r}: the step of {{{body}}} must be a positive number")
        if (abs(b - a) // s) + 1 > MAX_REVISIONS:
            raise ConfigError(f"--revisions {whole!r}: {{{body}}} would name over {MAX_REVISIONS} revisions")
        items = [str(v) for v in (range(a, b + 1, s) if a <= b else range(a, b - 1, -s))]
    elif "," in body:
        items = [p.strip() for p in body.split(",")]
    else:
        raise ConfigError(f"--revisions {whole!r}: cannot expand {{{body}}}; write {{FIRST..LAST}}, "
                          "{FIRST..LAST..STEP} or {a,b,c}")
    out: list[str] = []
    for item in items:
        out += _expand_braces(f"{head}{item}{tail}", whole)
        if len(out) > MAX_REVISIONS:
            raise ConfigError(f"--revisions {whole!r}: names over {MAX_REVISIONS} revisions")
    return out


def _repo_folder(repo: str) -> Path:
    return hub_cache() / ("models--" + repo.replace("/", "--"))


def list_refs(repo: str) -> dict[str, str]:
    """Branch and tag name → commit hash of a model repository: from the Hub, or with
    ``HF_HUB_OFFLINE=1`` from the local cache's ``refs/`` folder."""
    url = f"hf://{repo}"
    if hub_offline():
        refs = _repo_folder(repo) / "refs"
        if not refs.is_dir():
            raise CheckpointError(None, f"{url}: not in the local Hugging Face cache ({hub_cache()}) and "
                                  "HF_HUB_OFFLINE=1 forbids fetching it; unset HF_HUB_OFFLINE or point "
                                  "HF_HUB_CACHE at the cache that holds it")
        out = {}
        for p in sorted(refs.rglob("*")):
            if p.is_file():
                out[p.relative_to(refs).as_posix()] = p.read_text(encoding="utf-8").strip()
        return out
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ConfigError(f"{url}: reading the Hugging Face Hub needs huggingface_hub, which is not installed: "
                          "pip install 'spectral-edge[remote]'") from None
    try:
        got = HfApi().list_repo_refs(repo)
    except Exception as e:  # noqa: BLE001 - RepositoryNotFoundError, HTTP and network errors alike
        kind = type(e).__name__
        if "NotFound" in kind or "Unauthorized" in kind:
            raise CheckpointError(None, f"{url}: no such model repository, or a private one (set HF_TOKEN)") from None
        raise CheckpointError(None, f"{url}: cannot list the repository's revisions ({kind}: "
                              f"{' '.join(str(e).split())[:160]}); this needs network access to the Hub") from None
    return {r.name: r.target_commit for r in [*got.branches, *got.tags]}


def revision_refs(url: str, revisions: Sequence[str], storage_options: Mapping[str, Any] | None = None
                  ) -> list[Any]:
    """One checkpoint per selected revision of ``hf://org/name``, sorted by step: a local
    :class:`~.checkpoints.CheckpointRef` into the cache when offline, else a
    :class:`~.remote.RemoteRef` at the revision's commit."""
    repo, pinned, sub = parse_hf_url(url)
    if pinned is not None:
        raise ConfigError(f"{url}: give the revisions with --revisions or after @, not both")
    names, patterns = expand_revisions(revisions)
    refs = list_refs(repo)
    chosen = [n for n in names if n in refs] + [n for n in sorted(refs, key=_natural)
                                                  if n not in names and any(p.fullmatch(n) for p in patterns)]
    unknown = [n for n in names if n not in refs]
    if unknown:
        close = sorted(refs, key=_natural)[:4]
        where = "in the local cache" if hub_offline() else "on the Hub"
        raise ConfigError(f"hf://{repo}: no revision {unknown[0]!r} {where}" +
                          (f" ({len(unknown) - 1} more unknown)" if len(unknown) > 1 else "") +
                          f"; it has {len(refs)} refs, e.g. {', '.join(close) or 'none'}")
    if not chosen:
        raise ConfigError(f"hf://{repo}: --revisions {' '.join(map(repr, revisions))} matches none of its "
                          f"{len(refs)} refs")
    found: dict[int, Any] = {}
    named: dict[int, str] = {}
    for name in chosen:
        label = f"hf://{repo}@{name}" + (f"/{sub}" if sub else "")
        try:
            step = name_step(name, folder=True)
        except CheckpointError as e:
            raise ConfigError(f"{label}: {e.problem}") from None
        if step is None:
            raise ConfigError(f"{label}: the revision name holds no step (e.g. step1000); choose revisions with "
                              "--revisions")
        if step in found:
            raise ConfigError(f"hf://{repo}: revisions {named[step]!r} and {name!r} both give step {step}; "
                              "keep one of them")
        named[step] = name
        commit = refs[name]
        if hub_offline():
            folder = _repo_folder(repo) / "snapshots" / commit / sub
            if not folder.is_dir():
                raise CheckpointError(None, f"{label}: commit {commit[:12]} is not in the local cache "
                                      f"({folder.parent}) and HF_HUB_OFFLINE=1 forbids fetching it")
            found[step] = CheckpointRef(step, folder, "hf")
        else:
            target = f"hf://{repo}@{quote(commit, safe='')}" + (f"/{sub}" if sub else "")
            found[step] = RemoteRef(step, target, "hf", dict(storage_options or {}), label=label)
    return [found[s] for s in sorted(found)]


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def local_revision_folder(url: str) -> Path | None:
    """With ``HF_HUB_OFFLINE=1``, the cached snapshot folder of ``hf://org/name[@revision][/sub]``
    (revision ``main`` by default), read as a local folder of checkpoints; None when online."""
    if not hub_offline():
        return None
    repo, revision, sub = parse_hf_url(url)
    refs = list_refs(repo)
    revision = revision or "main"
    commit = refs.get(revision, revision if re.fullmatch(r"[0-9a-f]{40}", revision) else None)
    folder = _repo_folder(repo) / "snapshots" / str(commit) / sub
    if commit is None or not folder.is_dir():
        raise CheckpointError(None, f"{url}: revision {revision!r} is not in the local cache ({_repo_folder(repo)}) "
                              "and HF_HUB_OFFLINE=1 forbids fetching it")
    return folder
