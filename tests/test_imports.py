"""The import graph of engine/, storage/ and webapp/ has no cycle.

A function-level import that "breaks" a cycle only hides it: the two modules still need each
other, and neither can be understood, tested or moved alone. So every `import` and
`from ... import` counts, at module level, inside functions and under `if TYPE_CHECKING`,
with relative imports resolved. (That the web app imports no torch is tested in
tests/webapp/test_app.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "storage", "webapp")


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py under PACKAGES (a package is its __init__)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name `module` imports anywhere in its file, relative imports resolved;
    `from a import b` gives both `a` and `a.b` (b may be a submodule or a name in a)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # `from . import x` in a.b.c: level 1 is package a.b
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports. A name is cut back to the longest project
    module it starts with; a module importing its own package (`engine.data.x` importing
    `engine.data`) is no edge, since the package's __init__ runs first anyway."""
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_cycles_finds_a_cycle_and_only_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"]]


def test_imported_names_resolve_relative_and_function_level_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "from . import sibling\nfrom ..up import thing\n"
        "def f():\n    import deep.module\n    from .near import x\n"
    )
    names = imported_names("pkg.sub.mod", source)
    assert {
        "pkg.sub",
        "pkg.sub.sibling",
        "pkg.up",
        "pkg.up.thing",
        "deep.module",
        "pkg.sub.near",
        "pkg.sub.near.x",
    } == names


def test_no_import_cycles():
    graph = import_graph()
    assert "engine.data.catalog" in graph and "webapp.app" in graph  # the walk found the tree
    found = cycles(graph)
    assert not found, "import cycles (function-level imports included):\n" + "\n".join(
        "  " + " <-> ".join(component) for component in found
    )
