"""The serving and reader processes settle their memory before serving (serve.memory)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_SETTLE = """
import sys
from dresscode.core.config import get_settings
from dresscode.serve.memory import import_and_freeze

frozen = import_and_freeze("test process", modules=("json",), {settings})
print(frozen, "airflow.providers.amazon.aws.fs.s3" in sys.modules)
"""


def _settle(tmp_path: Path, settings: str) -> tuple[int, bool]:
    # A process of its own: gc.freeze() would keep the test session's objects forever.
    done = subprocess.run(
        [sys.executable, "-c", _SETTLE.format(settings=settings)],
        env={**os.environ, "DRESSCODE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    frozen, opened = done.stdout.split()[-2:]
    return int(frozen), opened == "True"


def test_start_up_objects_are_frozen_and_the_lake_storage_opened(tmp_path: Path) -> None:
    frozen, opened = _settle(tmp_path, "settings=get_settings()")
    # The interpreter's and the imports' objects, out of the collector's walk.
    assert frozen > 10_000
    # The object storage's filesystems (the amazon provider's s3fs among them) are imported at
    # start, not by the request log's first flush under load.
    assert opened


def test_without_settings_the_storage_is_left_to_the_first_write(tmp_path: Path) -> None:
    frozen, opened = _settle(tmp_path, "")
    assert frozen > 10_000
    assert not opened
