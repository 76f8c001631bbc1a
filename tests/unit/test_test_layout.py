"""No test module imports another test module; what tests share lives in tests/support/.

Importing a test module drags its tests, fixtures and module-level setup into the importer
(pytest may then collect them twice or shadow a fixture), and makes the importer depend on
whatever that module keeps for its own tests. Checked by reading the source, as the package
boundaries are.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def imported_modules(source: str, importer: str, is_package: bool = False) -> set[str]:
    """Every module `source` may import, absolute: for `from a import b`, both `a` and
    `a.b` (b may be a module); relative imports resolved against `importer`."""
    package = importer if is_package else importer.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def is_test_module(name: str) -> bool:
    """A module of the suite named test_*: a file, not a test function imported by name
    (recipe_flows' tests are run from test_outputs that way)."""
    path = ROOT.joinpath(*name.split("."))
    return (
        name.startswith("tests.")
        and path.name.startswith("test_")
        and (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file())
    )


def test_no_test_module_imports_another():
    sources = sorted(TESTS.rglob("*.py"))
    assert len(sources) > 50  # the scan found the suite, not an empty folder
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sources
        for name in sorted(
            imported_modules(
                path.read_text(), module_name(path), is_package=path.name == "__init__.py"
            )
        )
        if is_test_module(name)
    ]
    assert not offenders, "move what they share to tests/support/:\n" + "\n".join(offenders)


def test_the_check_sees_every_spelling_of_such_an_import():
    importer = "tests.integration.test_metrics"
    spellings = {
        "from .test_task_races import Services": "tests.integration.test_task_races",
        "from . import test_task_races": "tests.integration.test_task_races",
        "from ..e2e.test_cancel import wait_until": "tests.e2e.test_cancel",
        "from tests.e2e import test_cancel": "tests.e2e.test_cancel",
        "import tests.e2e.test_cancel": "tests.e2e.test_cancel",
    }
    for source, expected in spellings.items():
        assert expected in imported_modules(source, importer), source
        assert is_test_module(expected), expected
    # Shared support modules and conftest helpers are fine.
    allowed = (
        "from tests.support.wiring import Services\n"
        "from tests.e2e.recipe_flows import test_cli_spec_file_with_concat_recipes\n"
    )
    assert not any(is_test_module(name) for name in imported_modules(allowed, importer))
