"""Three packages, one direction (docs/architecture.md), checked by reading the source.

`server/` and `worker/` never import each other, `common/` imports neither of them, and
only the CLI (`kiln_cli/`, the composition root) may import both. `make lint` checks the
same with import-linter; this test makes `pytest` alone catch a stray import too. Every
import statement counts, wherever it is: module level, deferred inside a function, or
under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Package -> the first-party packages it must never import.
FORBIDDEN = {
    "server": {"worker", "kiln_cli"},
    "worker": {"server", "kiln_cli"},
    "common": {"server", "worker", "kiln_cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(absolute module name, line) for every import statement in `source`."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield target, node.lineno


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    forbidden = FORBIDDEN[module.partition(".")[0]]
    return [
        f"{module}:{line} imports {target}"
        for target, line in imported_modules(source, module, is_package)
        if target.partition(".")[0] in forbidden
    ]


def package_modules() -> Iterator[Path]:
    for package in FORBIDDEN:
        yield from sorted((REPO / package).rglob("*.py"))


def test_every_package_keeps_its_direction() -> None:
    paths = list(package_modules())
    assert len(paths) > 50, "the walk found too few modules: is REPO right?"
    found = [
        problem
        for path in paths
        for problem in violations(
            path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
        )
    ]
    assert found == [], "imports against the three-package rule:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("worker.loop", "import server.config"),
        ("worker.loop", "from server.config import Settings"),
        ("worker.media.describe", "def f():\n    from server import app\n"),
        ("server.app", "from worker.loop import Worker"),
        ("server.app", "if TYPE_CHECKING:\n    import worker.settings\n"),
        ("common.storage.origins", "from server.domain import worker_reports"),
        ("common.egress", "import kiln_cli.main"),
    ],
)
def test_the_check_sees_a_forbidden_import(module: str, source: str) -> None:
    assert violations(source, module) != []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("worker.loop", "from common.storage.local import LocalStorage"),
        ("worker.loop", "from .settings import WorkerSettings"),
        ("worker.media.describe", "from ..settings import WorkerSettings"),
        ("server.jobs.service", "from ..domain import ids"),
        ("server.app", "from kiln.worker.v1 import worker_service_pb2"),
        ("common.storage.origins", "from .keys import safe_relative_path"),
    ],
)
def test_the_check_allows_what_the_rule_allows(module: str, source: str) -> None:
    assert violations(source, module) == []


def test_relative_imports_resolve_against_the_package() -> None:
    found = list(imported_modules("from ..domain import ids", "server.jobs.service", False))
    assert found == [("server.domain", 1)]
    found = list(imported_modules("from . import views", "server.jobs", True))
    assert found == [("server.jobs", 1)]
