"""Resource ids: a type prefix and a ULID, so ids sort by creation time and say what they are."""

from __future__ import annotations

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{str(ULID()).lower()}"


def job_id() -> str:
    return new_id("job")


def output_id() -> str:
    return new_id("out")


def task_id() -> str:
    return new_id("tsk")
