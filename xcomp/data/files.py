"""Reading benchmark files as users download them: annotation rows (a JSON list, JSONL, or parquet) and videos
found under a folder in whatever layout the copy has."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from xcomp.errors import ConfigError
from xcomp.video.decode import IMAGE_SUFFIXES


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an annotation file: a JSON list of objects, JSON Lines, or a parquet table. A file that is not
    there or not readable is one line naming it."""
    from xcomp.data.source import DataError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"annotation file not found: {path}")
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path.name}: not UTF-8 text (byte {error.start}); expected JSON, JSON Lines or parquet") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path.name}: not JSON ({error.msg}, line {error.lineno})") from None
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path.name}: row {number}: not JSON ({error.msg})") from None
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DataError(f"{path.name}: row {number}: expected a JSON object, got {type(row).__name__}")
    if not rows:
        raise DataError(f"{path.name}: no rows")
    return rows


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    """Parquet rows as plain Python values (lists, not numpy arrays)."""
    import pyarrow.parquet as pq

    from xcomp.data.source import DataError

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several types for a broken file
        raise DataError(f"{path.name}: not a readable parquet file ({error})") from None
    if not rows:
        raise DataError(f"{path.name}: no rows")
    return rows


class VideoIndex:
    """The videos under a folder: a name is looked up as a relative path first, then by its base name anywhere
    below (downloaders nest videos in sub-folders such as ``videos/00000/``), the folder walked once on the first
    such look-up. A frame folder (a directory of images) counts as a video."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._by_name: dict[str, Path] | None = None
        if not self.root.is_dir():
            raise ConfigError(f"video folder not found: {self.root}")

    def find(self, names: Iterable[str]) -> Path | None:
        """The first of ``names`` (relative paths, tried in order) that is a video here, or None."""
        names = list(names)
        for name in names:
            path = self.root / name
            if path.is_file() or _is_frame_folder(path):
                return path
        index = self._index()
        for name in names:
            if Path(name).name in index:
                return index[Path(name).name]
        return None

    def _index(self) -> dict[str, Path]:
        if self._by_name is None:
            self._by_name = {}
            for folder, dirs, files in os.walk(self.root):
                dirs.sort()
                here = Path(folder)
                if files and any(f.lower().endswith(IMAGE_SUFFIXES) for f in files) and here != self.root:
                    self._by_name.setdefault(here.name, here)
                for name in sorted(files):
                    self._by_name.setdefault(name, here / name)
        return self._by_name


def _is_frame_folder(path: Path) -> bool:
    if not path.is_dir():
        return False
    return any(entry.name.lower().endswith(IMAGE_SUFFIXES) for entry in os.scandir(path))
