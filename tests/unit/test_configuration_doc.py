"""docs/configuration.md against the code: every KILN_* variable the code reads has a row,
every row names a variable something reads, and a default written as a literal is the code's.

The names come from the source (`"KILN_…"` string literals in the runtime packages), so a new
setting without a row fails here. Defaults are compared by behaviour where the settings
loaders read the variable: setting it to the documented literal must give the same settings
as leaving it unset. Variables read elsewhere (the log format, the tests' own) are checked in
the source instead: the literal must be the default of the `get(NAME, "default")` that reads
them; the CLI's URL is compared with its constant.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kiln_cli.common import DEFAULT_URL
from server.config import load_settings
from worker.settings import load_worker_settings

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
RUNTIME_PACKAGES = ("server", "worker", "common", "kiln_cli")
# What load_settings and load_worker_settings read the environment through.
LOADER_SOURCES = ("server/config.py", "worker/settings.py", "common/pubsub.py")

# Defaults of variables the settings loaders do not read, where the code keeps them.
CODE_DEFAULTS = {"KILN_URL": DEFAULT_URL}

NAME = re.compile(r'"(KILN_[A-Z0-9_]+)"')
# | `VARIABLE` | default | read by | meaning |
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| (.*?) \| (.*?) \| .* \|$")
LITERAL = re.compile(r"^`([^`]*)`")


def python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


def names_in(paths: list[Path]) -> set[str]:
    return {name for path in paths for name in NAME.findall(path.read_text())}


RUNTIME_NAMES = names_in(python_files(*RUNTIME_PACKAGES))
LOADER_NAMES = names_in([REPO / source for source in LOADER_SOURCES])
TEST_FILES = [path for path in python_files("tests") if path.resolve() != Path(__file__).resolve()]


def documented_rows() -> dict[str, tuple[str, str]]:
    """KILN_* variable -> (default cell, read-by cell), from every table of the page."""
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match and match.group(1).startswith("KILN_"):
            name, default, read_by = match.groups()
            assert name not in rows, f"{name} has two rows in {DOC.name}"
            rows[name] = (default.strip(), read_by.strip())
    return rows


ROWS = documented_rows()
LITERAL_DEFAULTS = {
    name: match.group(1)
    for name, (default, _) in ROWS.items()
    if (match := LITERAL.match(default)) is not None
}


def test_the_page_was_read() -> None:
    # A table format change must not make the checks below pass on nothing.
    assert len(ROWS) > 40
    assert len(LITERAL_DEFAULTS) > 30
    assert len(RUNTIME_NAMES) > 40


def test_every_variable_the_code_reads_has_a_row() -> None:
    missing = sorted(RUNTIME_NAMES - ROWS.keys())
    assert not missing, f"read by the code but not in docs/configuration.md: {missing}"


def test_every_row_names_a_variable_that_is_read() -> None:
    test_sources = "\n".join(path.read_text() for path in TEST_FILES)
    unread = sorted(
        name
        for name, (_, read_by) in ROWS.items()
        if (name not in test_sources if read_by == "tests" else name not in RUNTIME_NAMES)
    )
    assert not unread, f"in docs/configuration.md but read by nothing: {unread}"


@pytest.mark.parametrize("name", sorted(LITERAL_DEFAULTS.keys() & LOADER_NAMES))
def test_a_documented_default_changes_no_setting(name: str) -> None:
    literal = LITERAL_DEFAULTS[name]
    assert load_settings({name: literal}) == load_settings({}), (name, literal)
    assert load_worker_settings({name: literal}) == load_worker_settings({}), (name, literal)


@pytest.mark.parametrize("name", sorted(LITERAL_DEFAULTS.keys() - LOADER_NAMES))
def test_a_documented_default_is_in_the_code_that_reads_it(name: str) -> None:
    literal = LITERAL_DEFAULTS[name]
    if name in CODE_DEFAULTS:
        assert literal == CODE_DEFAULTS[name], (name, literal)
        return
    # Where it is read: the tests' own variables in tests/, the others in the runtime packages
    # (tests set variables too, to values that are not their defaults).
    sources = TEST_FILES if ROWS[name][1] == "tests" else python_files(*RUNTIME_PACKAGES)
    readers = []
    for path in sources:
        text = path.read_text()
        if f'"{name}"' not in text:
            continue
        # The name spelt out, or a module constant holding it (FORMAT_SETTING = "KILN_…").
        constants = re.findall(rf'^(\w+) = "{name}"$', text, re.MULTILINE)
        spellings = "|".join(re.escape(s) for s in [f'"{name}"', *constants])
        default = re.escape(f'"{literal}"')
        if re.search(rf"(?:{spellings})\s*,\s*{default}", text):
            readers.append(path)
    assert readers, f"{name}: nothing reads it with the documented default {literal!r}"
