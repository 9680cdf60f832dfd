"""The architecture's counted figures (issue 20), read from the source so that they stay true.

Each check reads ``src/`` with :mod:`ast`: the import graph has no cycle (imports inside
functions count, ``if TYPE_CHECKING:`` blocks do not), few private names cross package lines,
no module is over 600 lines and no function over 80, and imports follow DESIGN.md's direction
(nothing imports the CLI or ``testing``; ``testing`` shares no code with the client's
providers). Each check also runs on a small synthetic tree that breaks it, so that it cannot
pass by seeing nothing.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_PRIVATE_NAMES = 10
#: Packages that no module outside them may import, with the packages that may anyway: the
#: CLI is the top layer, and it serves the FakeProvider (its demo, ``fake-provider``).
TOP_LAYERS = {"lionpride.cli": (), "lionpride.testing": ("lionpride.cli",)}
#: What ``testing`` may not import: it writes the wire formats on its own (DESIGN D11).
PROVIDER_CODE = "lionpride.services.providers"


@dataclass(frozen=True, slots=True)
class Module:
    """One source file: its dotted name, whether it is a package's ``__init__``, its length
    and its syntax tree."""

    name: str
    is_package: bool
    lines: int
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package the module belongs to (a package's ``__init__``: that package)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True, slots=True)
class Import:
    """One runtime import of a module of the tree: ``name`` of ``target`` (``None``: the module
    itself), written at ``line`` of ``importer``."""

    importer: str
    target: str
    name: str | None
    line: int

    def __str__(self) -> str:
        what = self.target if self.name is None else f"{self.name} from {self.target}"
        return f"{self.importer}:{self.line} imports {what}"


def load_tree(src: Path) -> dict[str, Module]:
    """Every module under ``src``, by dotted name."""
    modules = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        text = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        tree = ast.parse(text, filename=str(path))
        modules[name] = Module(name, is_package, len(text.splitlines()), tree)
    return modules


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks (their ``else`` runs)."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            hidden.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return hidden


def _resolve(module: Module, level: int, name: str | None) -> str:
    """The absolute module a ``from`` import of ``level`` dots names."""
    if level == 0:
        return name or ""
    base = module.package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _owner(modules: dict[str, Module], dotted: str) -> str | None:
    """The module of the tree that ``dotted`` (a module, or a name inside one) lives in."""
    while dotted not in modules and "." in dotted:
        dotted = dotted.rpartition(".")[0]
    return dotted if dotted in modules else None


def runtime_imports(modules: dict[str, Module]) -> list[Import]:
    """Every import of one module of the tree by another that runs (at import time or in a
    function), ``if TYPE_CHECKING:`` blocks left out."""
    found = []
    for module in modules.values():
        hidden = _type_checking_only(module.tree)
        for node in ast.walk(module.tree):
            if id(node) in hidden:
                continue
            wanted: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                wanted = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, node.level, node.module)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    wanted.append((submodule, None) if submodule in modules else (base, alias.name))
            for dotted, name in wanted:
                target = _owner(modules, dotted)
                if target is not None and target != module.name:
                    found.append(Import(module.name, target, name, node.lineno))
    return found


def import_cycles(modules: dict[str, Module]) -> list[tuple[list[str], list[Import]]]:
    """Each strongly connected group of modules (sorted) with a shortest cycle through its
    first module, as the imports that close it."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in runtime_imports(modules):
        edges.setdefault(imp.importer, {}).setdefault(imp.target, imp)
    cycles = []
    for group in _strongly_connected(edges):
        start = min(group)
        cycles.append((sorted(group), _shortest_cycle(start, edges, group)))
    return cycles


def _strongly_connected(edges: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's groups of more than one module (iterative: no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges.get(root, {})))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            step = next(successors, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(edges.get(step, {}))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def _shortest_cycle(
    start: str, edges: dict[str, dict[str, Import]], group: set[str]
) -> list[Import]:
    """The imports of a shortest path from ``start`` back to itself inside ``group``."""
    came_by: dict[str, Import] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target, imp in edges.get(node, {}).items():
            if target == start:
                path = [imp]
                while path[0].importer != start:
                    path.insert(0, came_by[path[0].importer])
                return path
            if target in group and target not in came_by:
                came_by[target] = imp
                queue.append(target)
    raise AssertionError(f"{start} is in a cycle group but no path leads back to it")


def private_imports(modules: dict[str, Module]) -> dict[tuple[str, str | None], list[Import]]:
    """Private names imported across packages, each with the places that import it.

    A name is private when it starts with one underscore, or lives in a private module
    (``_name.py``) of the target's package; an import within one package is that package's
    own business.
    """
    found: dict[tuple[str, str | None], list[Import]] = {}
    for imp in runtime_imports(modules):
        target = modules[imp.target]
        if modules[imp.importer].package == target.package:
            continue
        module_part = "" if target.is_package else target.name.rpartition(".")[2]
        if _private(imp.name or "") or _private(module_part):
            found.setdefault((imp.target, imp.name), []).append(imp)
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def long_modules(modules: dict[str, Module], limit: int) -> list[str]:
    """``module (N lines)`` for each module over ``limit`` lines."""
    return [f"{m.name} ({m.lines} lines)" for m in modules.values() if m.lines > limit]


def long_functions(modules: dict[str, Module], limit: int) -> list[str]:
    """``module:line qualified.name (N lines)`` for each function over ``limit`` lines."""
    found = []
    for module in modules.values():
        for qualname, node in _functions(module.tree, ""):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append(f"{module.name}:{node.lineno} {qualname} ({length} lines)")
    return found


def _functions(
    parent: ast.AST, prefix: str
) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method below ``parent``, nested ones too, with qualified names."""
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in ast.iter_child_nodes(parent):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((prefix + node.name, node))
            found += _functions(node, f"{prefix}{node.name}.<locals>.")
        elif isinstance(node, ast.ClassDef):
            found += _functions(node, f"{prefix}{node.name}.")
        else:
            found += _functions(node, prefix)
    return found


def upward_imports(modules: dict[str, Module]) -> list[Import]:
    """Imports against DESIGN.md's direction: of a top layer (the CLI, ``testing``) from
    outside it and the layers allowed to use it, and of provider code by ``testing``."""
    found = []
    for imp in runtime_imports(modules):
        for layer, allowed in TOP_LAYERS.items():
            if _within(imp.target, layer) and not any(
                _within(imp.importer, inside) for inside in (layer, *allowed)
            ):
                found.append(imp)
        if _within(imp.importer, "lionpride.testing") and _within(imp.target, PROVIDER_CODE):
            found.append(imp)
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _listing(items: list[str]) -> str:
    return "\n  " + "\n  ".join(items)


# -- the library --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library() -> dict[str, Module]:
    """The library's modules, read once for all the checks."""
    return load_tree(SRC)


def test_no_import_cycle(library: dict[str, Module]) -> None:
    """No module of the library imports itself through others (function-level imports
    count, TYPE_CHECKING blocks do not)."""
    cycles = import_cycles(library)
    shown = [
        f"{len(group)} modules {group}, e.g. "
        + " -> ".join(f"{i.importer}:{i.line}" for i in cycle)
        + f" -> {cycle[0].importer}"
        for group, cycle in cycles
    ]
    assert not cycles, f"{len(cycles)} import cycle group(s):" + _listing(shown)


def test_few_private_names_cross_packages(library: dict[str, Module]) -> None:
    """At most 10 private names are imported from another package."""
    found = private_imports(library)
    shown = [
        f"{name or '(module)'} of {target}: {', '.join(str(i) for i in places)}"
        for (target, name), places in sorted(found.items(), key=str)
    ]
    assert len(found) <= MAX_PRIVATE_NAMES, (
        f"{len(found)} private names imported across packages (at most {MAX_PRIVATE_NAMES}):"
        + _listing(shown)
    )


def test_no_module_over_600_lines(library: dict[str, Module]) -> None:
    """Every module of the library has at most 600 lines."""
    found = long_modules(library, MAX_MODULE_LINES)
    assert not found, f"modules over {MAX_MODULE_LINES} lines:" + _listing(found)


def test_no_function_over_80_lines(library: dict[str, Module]) -> None:
    """Every function and method of the library has at most 80 lines."""
    found = long_functions(library, MAX_FUNCTION_LINES)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:" + _listing(found)


def test_imports_follow_the_layers(library: dict[str, Module]) -> None:
    """Nothing in the library imports the CLI or testing (the CLI may use testing), and
    testing imports none of the client's provider code."""
    found = upward_imports(library)
    assert not found, "imports against DESIGN.md's direction:" + _listing([str(i) for i in found])


# -- the checks catch what they look for --------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> dict[str, Module]:
    """A synthetic source tree under ``root`` from ``{relative path: text}``; its modules."""
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return load_tree(root)


def test_cycle_check_sees_function_imports_and_skips_type_checking(tmp_path: Path) -> None:
    """A cycle closed by an import inside a function is found, with its path; one closed
    only under TYPE_CHECKING is not."""
    modules = _write(
        tmp_path,
        {
            "lionpride/__init__.py": "",
            "lionpride/a.py": "from lionpride import b\n",
            "lionpride/b.py": "def f():\n    from lionpride.c import x\n",
            "lionpride/c.py": "from .a import y\n",
            "lionpride/d.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from lionpride import e\n",
            "lionpride/e.py": "import lionpride.d\n",
        },
    )
    [(group, cycle)] = import_cycles(modules)
    assert group == ["lionpride.a", "lionpride.b", "lionpride.c"]
    assert [(i.importer, i.target, i.line) for i in cycle] == [
        ("lionpride.a", "lionpride.b", 1),
        ("lionpride.b", "lionpride.c", 2),
        ("lionpride.c", "lionpride.a", 1),
    ]


def test_private_check_counts_names_and_private_modules_across_packages(tmp_path: Path) -> None:
    """A private name, or any name of a private module, imported from another package is
    counted once however often it is imported; inside one package it is not counted."""
    modules = _write(
        tmp_path,
        {
            "lionpride/__init__.py": "",
            "lionpride/core/__init__.py": "",
            "lionpride/core/_hidden.py": "open_name = 1\n",
            "lionpride/core/clock.py": "_tick = 1\nfrom lionpride.core._hidden import open_name\n",
            "lionpride/app/__init__.py": "",
            "lionpride/app/one.py": "from lionpride.core.clock import _tick\n"
            "from lionpride.core._hidden import open_name\n",
            "lionpride/app/two.py": "from ..core.clock import _tick\n"
            "from lionpride.core import clock\n",
        },
    )
    found = private_imports(modules)
    assert sorted(found, key=str) == [
        ("lionpride.core._hidden", "open_name"),
        ("lionpride.core.clock", "_tick"),
    ]
    assert [i.importer for i in found["lionpride.core.clock", "_tick"]] == [
        "lionpride.app.one",
        "lionpride.app.two",
    ]


def test_length_checks_find_a_long_module_and_a_long_method(tmp_path: Path) -> None:
    """A module over the line limit and a method over the function limit are named."""
    method = "class Box:\n    def fill(self):\n" + "".join(
        f"        x{i} = {i}\n" for i in range(81)
    )
    modules = _write(
        tmp_path,
        {
            "lionpride/__init__.py": "",
            "lionpride/big.py": "x = 1\n" * 601,
            "lionpride/small.py": method + "\n\ndef short():\n    return 1\n",
        },
    )
    assert long_modules(modules, MAX_MODULE_LINES) == ["lionpride.big (601 lines)"]
    assert long_functions(modules, MAX_FUNCTION_LINES) == ["lionpride.small:2 Box.fill (82 lines)"]


def test_layer_check_finds_imports_of_the_cli_testing_and_providers(tmp_path: Path) -> None:
    """The library importing the CLI or testing is found, and testing importing provider
    code; the CLI using testing is allowed."""
    modules = _write(
        tmp_path,
        {
            "lionpride/__init__.py": "",
            "lionpride/cli/__init__.py": "from lionpride.testing import fake\n",
            "lionpride/testing/__init__.py": "",
            "lionpride/testing/fake.py": "from lionpride.services.providers import oai\n",
            "lionpride/services/__init__.py": "def run():\n    import lionpride.cli\n",
            "lionpride/services/providers/__init__.py": "",
            "lionpride/services/providers/oai.py": "from lionpride.testing.fake import x\n",
        },
    )
    assert sorted(str(i) for i in upward_imports(modules)) == [
        "lionpride.services.providers.oai:1 imports x from lionpride.testing.fake",
        "lionpride.services:2 imports lionpride.cli",
        "lionpride.testing.fake:1 imports lionpride.services.providers.oai",
    ]
