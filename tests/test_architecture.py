"""The shape of the package, checked from its source: imports run one way (no circle, lazy and
type-only imports included), no module reaches into another's private names, every concept
has one definition, and no source file is over 800 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "spectral_edge"
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(PKG.rglob("*.py")):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = p
    return mods


MODULES = _modules()
TREES = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in MODULES.items()}


def _base(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _base(module)
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        if "." not in name:
            return None
        name = name.rpartition(".")[0]
    return name


def import_graph() -> dict[str, set[str]]:
    """module → the package modules it imports (anywhere in the file: top level, functions,
    ``if TYPE_CHECKING`` blocks); ``from pkg import submodule`` counts as the submodule."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, tree in TREES.items():
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = _resolve(m, node)
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
            for t in targets:
                k = _known(t)
                if k and k != m and not k.startswith(m + "."):
                    graph[m].add(k)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (import circles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_circle_finder_finds_a_planted_circle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(g) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_src():
    circles = strongly_connected(import_graph())
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_source_file_over_800_lines():
    long = {str(p.relative_to(SRC)): n for p in MODULES.values()
            if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_LINES}
    assert not long, long


def _imported_modules(module: str, tree: ast.Module) -> dict[str, str]:
    """Local names bound to package modules by ``import`` / ``from pkg import module``."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = _resolve(module, node)
            for a in node.names:
                if f"{mod}.{a.name}" in MODULES:
                    bound[a.asname or a.name] = f"{mod}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES and a.asname:
                    bound[a.asname] = a.name
    return bound


def test_no_module_uses_another_modules_private_names():
    bad = []
    for m, tree in TREES.items():
        mods = _imported_modules(m, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(m, node)
                if not target.startswith("spectral_edge"):
                    continue
                for a in node.names:
                    private = a.name.startswith("_") and not a.name.startswith("__")
                    if private and f"{target}.{a.name}" not in MODULES:
                        bad.append(f"{m}: from {target} import {a.name}")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in mods:
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    bad.append(f"{m}: {node.value.id}.{node.attr}")
    assert not bad, bad


def _definitions(name: str) -> list[str]:
    """Module-level functions and classes called ``name`` (methods and properties don't count)."""
    return [f"{m}:{node.lineno}" for m, tree in TREES.items() for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name]


@pytest.mark.parametrize("name", ["read_run", "grok_step", "RunData", "primary_window", "merge_metrics"])
def test_one_definition_of_each_run_concept(name):
    assert len(_definitions(name)) == 1, _definitions(name)


def test_no_two_public_classes_or_functions_share_a_name_across_packages():
    # e.g. two classes called Phases (report and analysis), two functions called load_run
    where: dict[str, set[str]] = {}
    for m, tree in TREES.items():
        if any(part.startswith("_") and not part.startswith("__") for part in m.split(".")):
            continue  # private modules (e.g. the compiled kernel behind functional.fold_kernel)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                where.setdefault(node.name, set()).add(m)
    # main: cli entry points; SpectralEdgeCallback: one per framework on purpose (integrations.hf
    # and integrations.lightning), so that switching frameworks changes only the import line
    allowed = {"main", "SpectralEdgeCallback"}
    dup = {n: sorted(ms) for n, ms in where.items() if len(ms) > 1 and n not in allowed}
    assert not dup, dup


def test_one_sketch_loop():
    # the begin / add / finish loop over a sample's tensors is written once (stream/sampler.py)
    callers = []
    for m, tree in TREES.items():
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef):
                calls = {n.func.attr for n in ast.walk(fn) if isinstance(n, ast.Call)
                         and isinstance(n.func, ast.Attribute) and n.func.attr in ("begin", "add", "finish")}
                if {"begin", "finish"} <= calls:
                    callers.append(f"{m}.{fn.name}")
    assert callers == ["spectral_edge.stream.sampler.sketch_pieces"], callers
