"""Lazy package attributes (PEP 562), so that importing a package imports none of its modules.

A package names its submodules and the public names each defines, and gets ``__all__`` and
the module ``__getattr__`` and ``__dir__`` from :func:`lazy_attributes`::

    __all__, __getattr__, __dir__ = lazy_attributes(__name__, {
        "monitor": ("Monitor",),
        "io.tables": ("read_table", "write_table"),
    })
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_attributes(package: str, exports: Mapping[str, Iterable[str]], submodules: Iterable[str] = (),
                    extra: Iterable[str] = (), deprecated: Mapping[str, Iterable[str]] | None = None,
                    ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``. ``exports``: submodule (relative to
    the package) → the names it defines; each name is imported on first access and then kept in
    the package's namespace. ``submodules``: attributes that are the submodule itself.
    ``extra``: names the package defines itself (e.g. ``__version__``). ``deprecated``: like
    ``exports``, but left out of ``__all__`` and ``__dir__`` (names once published here that
    still resolve). ``__all__`` is the sorted names plus ``extra``; ``__dir__`` adds the submodules."""
    where = {name: mod for mod, names in exports.items() for name in names}
    hidden = {name: mod for mod, names in (deprecated or {}).items() for name in names}
    subs = frozenset(submodules)
    public = sorted(where) + list(extra)
    listed = sorted({*public, *subs})

    def __getattr__(name: str) -> Any:
        if name in subs:
            return importlib.import_module(f".{name}", package)
        mod = where.get(name) or hidden.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{mod}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return list(listed)

    return public, __getattr__, __dir__
