"""Page sizes, one rule for every List: 0 asks for the default, at most MAX_PAGE_SIZE."""

from __future__ import annotations

from ..domain.errors import FieldViolation

MAX_PAGE_SIZE = 100


def page_size_violation(page_size: int, default: int) -> FieldViolation | None:
    if 0 <= page_size <= MAX_PAGE_SIZE:
        return None
    return FieldViolation(
        "page_size", f"must be between 1 and {MAX_PAGE_SIZE}, or 0 for the default ({default})"
    )


def page_limit(page_size: int, default: int) -> int:
    return page_size or default
