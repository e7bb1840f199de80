"""The layout of the code, read from its source with `ast` (nothing imported): no import cycle between xcomp's
modules, Hydra only in the Hydra layer, no module too long to read."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("xcomp", "hydra_plugins")
"""The project's importable packages: what is walked."""
HYDRA_LAYER = ("xcomp.experiment", "hydra_plugins")
"""The only packages whose modules may import Hydra."""
MAX_LINES = 450
"""Longest module allowed."""


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of `PACKAGES` (a package by the name of its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking(node: ast.If) -> bool:
    """Whether ``node`` is ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(body: list[ast.stmt]):
    """The import statements run when a module is imported: those of its body and of the blocks of its top-level
    ``if`` / ``try`` (not those under ``if TYPE_CHECKING:``, nor those in functions or classes)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _type_checking(node):
                yield from _top_level_imports(node.body)
            yield from _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _top_level_imports(block)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: dict) -> list[str]:
    """The dotted names an import statement of ``module`` imports: ``from a.b import c`` is the module ``a.b.c``
    where that is a module, else ``a.b`` (relative imports resolved against ``module``'s package)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level. Importing ``a.b.c`` also imports the package
    ``a.b`` (its ``__init__`` runs first), so both count. The root packages (``xcomp``, ``hydra_plugins``) are not
    counted as imported by their submodules: ``xcomp/__init__`` is the public API for users (and registers the
    model with transformers); `test_nothing_in_the_project_imports_names_from_the_root_package` keeps it out of
    every module's imports."""
    known = modules()
    graph = {}
    for module, path in known.items():
        targets = set()
        for node in _top_level_imports(ast.parse(path.read_text()).body):
            for name in _imported(node, module, path.name == "__init__.py", known):
                parts = name.split(".")
                targets.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        graph[module] = {t for t in targets if t in known and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as its modules in import order (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_package():
    graph = {"p": {"p.a"}, "p.a": {"p.b", "p"}, "p.b": set(), "q": {"p.b"}}
    assert find_cycle(graph) == ["p", "p.a", "p"]
    assert find_cycle({"p": set(), "p.a": {"p", "p.b"}, "p.b": {"p"}}) is None


def test_no_module_level_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_nothing_in_the_project_imports_names_from_the_root_package():
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module in PACKAGES:
                assert all(f"{node.module}.{a.name}" in modules() for a in node.names), (module, node.lineno)


def test_only_the_hydra_layer_imports_hydra():
    for module, path in modules().items():
        if any(module == layer or module.startswith(f"{layer}.") for layer in HYDRA_LAYER):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            hydra = [n for n in names if n == "hydra" or n.startswith("hydra.")]
            assert not hydra, f"{module} (line {node.lineno}) imports {hydra[0]}: only {', '.join(HYDRA_LAYER)} may"


def test_no_module_is_too_long():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
