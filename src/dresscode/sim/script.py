"""Response scripts: golden labels for known photos, appended to while the simulator runs.

A script is JSONL, one line per photo::

    {"image_sha256": "<sha256 of the image bytes as sent>", "items": [{...item...}, ...],
     "faults": ["prefix"]}

``faults`` (optional) are content faults always applied to answers about that photo
(``prefix``, ``fence``, ``repeat``, ``malformed``, ``pad``): tests use them to make one photo of
a batch misbehave in a known way. Other keys are ignored. Later lines (and later files) win for the same sha256. Files are
re-read incrementally when their mtime or size changes, so a seeder can append while the
simulator runs; a half-written last line waits until it is complete.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _File:
    path: Path
    signature: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) when last read
    offset: int = 0  # bytes consumed (complete lines only)
    line_no: int = 0
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    faults: dict[str, frozenset[str]] = field(default_factory=dict)


class ResponseScript:
    """The scripted items per image sha256, across one or more JSONL files."""

    def __init__(self, paths: tuple[Path, ...] | list[Path]) -> None:
        self._files = [_File(Path(p)) for p in paths]
        self._lock = threading.Lock()

    def items_for(self, image_sha256: str) -> list[dict[str, Any]] | None:
        """The scripted items of one photo (a fresh copy), or None if it is not scripted."""
        with self._lock:
            for f in self._files:
                self._refresh(f)
            for f in reversed(self._files):
                if image_sha256 in f.items:
                    return [dict(item) for item in f.items[image_sha256]]
        return None

    def faults_for(self, image_sha256: str) -> frozenset[str]:
        """The content faults scripted for one photo (empty when none)."""
        with self._lock:
            for f in self._files:
                self._refresh(f)
            for f in reversed(self._files):
                if image_sha256 in f.items:
                    return f.faults.get(image_sha256, frozenset())
        return frozenset()

    def __len__(self) -> int:
        with self._lock:
            for f in self._files:
                self._refresh(f)
            return len({sha for f in self._files for sha in f.items})

    def _refresh(self, f: _File) -> None:
        try:
            st = os.stat(f.path)
        except FileNotFoundError:
            if f.signature is not None:
                f.signature, f.offset, f.line_no, f.items, f.faults = None, 0, 0, {}, {}
            return
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == f.signature:
            return
        if f.signature is None or st.st_ino != f.signature[0] or st.st_size < f.offset:
            f.offset, f.line_no, f.items, f.faults = (
                0,
                0,
                {},
                {},
            )  # replaced or truncated: start over
        with open(f.path, "rb") as handle:
            handle.seek(f.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        tail = chunk[len(complete) :]
        if tail.strip() and _is_json(tail):
            complete = chunk  # a last line without its newline, but whole: take it
        for raw in complete.splitlines():
            f.line_no += 1
            self._add_line(f, raw)
        f.offset += len(complete)
        f.signature = signature

    @staticmethod
    def _add_line(f: _File, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            entry = json.loads(raw)
            sha = entry["image_sha256"]
            items = entry["items"]
            if not isinstance(sha, str) or not isinstance(items, list):
                raise TypeError("image_sha256 must be a string and items a list")
            faults = entry.get("faults", [])
            if not isinstance(faults, list) or not all(isinstance(x, str) for x in faults):
                raise TypeError("faults must be a list of fault names")
            f.items[sha.lower()] = [i for i in items if isinstance(i, dict)]
            f.faults[sha.lower()] = frozenset(faults)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s line %d: skipped, not a script line (%s)", f.path, f.line_no, exc)


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True
