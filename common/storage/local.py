"""Local output storage: files under a root, by the key template {job_id}/{output_id}/{path}."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class UnsafeKey(ValueError):
    """A key that would leave the storage root."""


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))

    def path_for(self, key: str) -> Path:
        path = Path(os.path.realpath(self.root / key))
        if self.root not in path.parents:
            raise UnsafeKey(key)
        return path

    def put_directory(self, source: Path, prefix: str) -> None:
        """Move every file of `source` under `prefix`, replacing what was there."""
        target = self.path_for(prefix)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))

    def stored_sizes(self, prefix: str) -> dict[str, int]:
        """Size of every file under `prefix`, by its path relative to the prefix."""
        target = self.path_for(prefix)
        if not target.is_dir():
            return {}
        return {
            path.relative_to(target).as_posix(): path.stat().st_size
            for path in target.rglob("*")
            if path.is_file() and not path.is_symlink()
        }

    def delete_prefix(self, prefix: str) -> int:
        target = self.path_for(prefix)
        if not target.exists():
            return 0
        count = sum(1 for path in target.rglob("*") if path.is_file())
        shutil.rmtree(target)
        return count
