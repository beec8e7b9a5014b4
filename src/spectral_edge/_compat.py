"""Deprecated spellings that still work: keyword arguments renamed when the library settled on
one spelling per idea (``kstar_rule`` for the k* rule, ``window`` for one window size).

:func:`renamed_kwargs` maps an old keyword to its new name with a ``DeprecationWarning``, so
code written against 0.1.0 keeps running while it is updated."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """``@renamed_kwargs(rule="kstar_rule")``: calls with ``rule=`` are passed on as
    ``kstar_rule=`` with a DeprecationWarning; giving both is a TypeError."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got both {old!r} (deprecated) and {new!r}")
                    warnings.warn(f"{fn.__qualname__}(): the argument {old!r} is now called {new!r}",
                                  DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
