"""Finding the model's state dict inside a loaded checkpoint object, and flattening it.

Shared by the torch-pickle reader (real tensors as leaves) and the DCP reader (metadata
records as leaves), so both apply the same rules:

1. ``state_key`` given: use the entry under that key (a top-level key, or a dotted path).
2. Every top-level value is a tensor: the object is the state dict.
3. Else the first of :data:`KNOWN_KEYS` whose value is a dict of tensors.
4. Else, if the object is a nest of dicts whose leaves are all tensors, flatten it.
5. Else fail with a message that lists the top-level keys and suggests ``--state-key``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..errors import CheckpointError, CorruptCheckpointError

#: Keys under which training frameworks nest the model weights, in the order tried.
KNOWN_KEYS: tuple[str, ...] = ("model", "state_dict", "model_state_dict", "module", "net", "ema")

T = TypeVar("T")


def _leaves(tree: Mapping[Any, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, leaf) for every non-dict value of a nest of dicts, in insertion order."""
    out: list[tuple[str, Any]] = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_leaves(value, name + "."))
        else:
            out.append((name, value))
    return out


def _is_state_dict(
    value: object, is_tensor: Callable[[object], bool], ignorable: Callable[[str, object], bool]
) -> bool:
    """True if ``value`` is a dict (possibly nested) with at least one tensor and no other content."""
    if not isinstance(value, Mapping) or not value:
        return False
    leaves = _leaves(value)
    return any(is_tensor(v) for _, v in leaves) and all(is_tensor(v) or ignorable(n, v) for n, v in leaves)


def _describe(value: object) -> str:
    """A short type description for error messages."""
    if isinstance(value, Mapping):
        return f"dict of {len(value)}"
    return type(value).__name__


def describe_keys(tree: Mapping[Any, Any], limit: int = 12) -> str:
    """``'model' (dict of 10), 'iter_num' (int), ...`` for the first keys of a dict."""
    items = [f"{k!r} ({_describe(v)})" for k, v in list(tree.items())[:limit]]
    more = f", ... ({len(tree) - limit} more)" if len(tree) > limit else ""
    return ", ".join(items) + more


def _lookup(tree: Mapping[Any, Any], key: str) -> tuple[bool, object]:
    """Find ``key`` as a top-level key or as a dotted path of nested keys."""
    if key in tree:
        return True, tree[key]
    node: object = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def pick_state_dict(
    tree: object,
    path: Path,
    state_key: str | None,
    is_tensor: Callable[[object], bool],
    ignorable: Callable[[str, object], bool],
    what: str,
) -> dict[str, T]:
    """Flat ``name -> tensor leaf`` mapping of the model weights found in ``tree`` (rules above).

    ``what`` names the container in messages (``"file"``, ``"DCP checkpoint"``).
    """
    if not isinstance(tree, Mapping):
        raise CorruptCheckpointError(
            path, f"the {what} holds a {type(tree).__name__}, not a state dict (a dict of tensor names to tensors)"
        )
    if not tree:
        raise CorruptCheckpointError(path, f"the {what} holds an empty dict, not a state dict")
    chosen: Mapping[Any, Any] | None = None
    if state_key is not None:
        found, value = _lookup(tree, state_key)
        if not found:
            raise CheckpointError(
                path, f"no entry {state_key!r} (given as the state key); top-level keys: {describe_keys(tree)}"
            )
        if not _is_state_dict(value, is_tensor, ignorable):
            raise CheckpointError(
                path, f"entry {state_key!r} holds {_describe(value)}, not a dict of tensors; top-level keys: "
                f"{describe_keys(tree)}"
            )
        chosen = value  # type: ignore[assignment]
    elif any(is_tensor(v) for v in tree.values()) and all(
        is_tensor(v) or ignorable(str(k), v) for k, v in tree.items()
    ):
        chosen = tree
    else:
        for key in KNOWN_KEYS:
            if key in tree and _is_state_dict(tree[key], is_tensor, ignorable):
                chosen = tree[key]
                break
        else:
            if _is_state_dict(tree, is_tensor, ignorable):
                chosen = tree
    if chosen is None:
        raise CorruptCheckpointError(
            path,
            f"no state dict found in the {what}: top-level keys are {describe_keys(tree)}; none of "
            f"{', '.join(KNOWN_KEYS)} holds a dict of tensors; pass --state-key NAME to say which entry holds "
            "the weights",
        )
    out: dict[str, T] = {}
    for name, leaf in _leaves(chosen):
        if not is_tensor(leaf):
            continue
        if name in out:
            raise CorruptCheckpointError(path, f"tensor name {name!r} occurs twice after flattening nested dicts")
        out[name] = leaf
    return out
