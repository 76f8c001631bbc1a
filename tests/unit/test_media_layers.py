"""worker.media is layered: no module imports (directly or through others) one that imports it.

Read from the source with `ast`, so imports inside functions (the usual way a cycle is hidden)
count as much as those at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import worker.media

PACKAGE = "worker.media"
PACKAGE_DIR = Path(worker.media.__file__).parent


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE_DIR).with_suffix("")
    parts = [part for part in relative.parts if part != "__init__"]
    return ".".join([PACKAGE, *parts])


def _imported_modules(tree: ast.AST, importer: str, is_package: bool) -> set[str]:
    """Every module named by an import statement anywhere in `tree`, with relative ones resolved.

    `from worker.media import ffmpeg` names worker.media.ffmpeg when that is a module, so each
    imported name is listed as a candidate too; the caller keeps only names that are modules.
    """
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = importer.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def media_import_graph() -> dict[str, set[str]]:
    """Module -> the worker.media modules it imports (the package itself is left out)."""
    sources = {_module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        imported = _imported_modules(tree, module, path.name == "__init__.py")
        graph[module] = {name for name in imported if name in sources and name != PACKAGE}
        graph[module].discard(module)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None when the graph is acyclic."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if cycle := visit(imported):
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if cycle := visit(module):
            return cycle
    return None


def test_worker_media_modules_import_no_cycle() -> None:
    graph = media_import_graph()
    assert "worker.media.commands" in graph, "the package walk found no modules"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in worker.media: " + " -> ".join(cycle or [])


def test_the_cycle_check_sees_imports_inside_functions() -> None:
    tree = ast.parse("def build():\n    from worker.media.ladder import build_ladder_command\n")
    assert "worker.media.ladder" in _imported_modules(tree, "worker.media.commands", False)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
