"""Replacing a manifest or playlist FFmpeg wrote with its corrected text."""

from __future__ import annotations

from pathlib import Path


def replace_text(path: Path, text: str) -> None:
    # Written aside and renamed, so a crash never leaves a half-written playlist.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, "utf-8")
    temporary.replace(path)


def replace_bytes(path: Path, content: bytes) -> None:
    """replace_text for a segment rewritten whole (encrypted)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    temporary.replace(path)
