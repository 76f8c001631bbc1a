"""Local output storage: files under a root, by the key template {job_id}/{output_id}/{path}."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
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

    def add_files(self, source: Path, prefix: str) -> None:
        """Move every file of `source` under `prefix`, keeping the files already there
        (chunks of one output arrive from several workers into the same folders)."""
        target = self.path_for(prefix)
        for path in sorted(source.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            destination = self.path_for(f"{prefix}/{path.relative_to(source).as_posix()}")
            if target not in destination.parents:
                raise UnsafeKey(str(destination))
            destination.parent.mkdir(parents=True, exist_ok=True)
            # Renamed into place: a reader never sees half a file.
            temporary = destination.with_name(f".{destination.name}.part")
            shutil.copyfile(path, temporary)
            temporary.replace(destination)

    def fetch_file(self, key: str, target: Path) -> None:
        """Copy the stored file `key` to `target` (a merge reads the chunks back)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path_for(key), target)

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

    def delete_files(self, prefix: str, paths: Sequence[str]) -> int:
        """Delete the named files under `prefix`; how many were there."""
        deleted = 0
        for path in paths:
            target = self.path_for(f"{prefix}/{path}")
            if target.is_file() and not target.is_symlink():
                target.unlink()
                deleted += 1
        return deleted

    def delete_prefix(self, prefix: str) -> int:
        target = self.path_for(prefix)
        if not target.exists():
            return 0
        count = sum(1 for path in target.rglob("*") if path.is_file())
        shutil.rmtree(target)
        return count
