"""The lake's Delta tables under concurrent and killed writers (issue 17's drills).

Two batch tasks commit to ``wardrobe_items`` and ``manifests`` at the same moment, 100 times
each: every row lands once. A writer killed with SIGKILL in the middle of its commits leaves
readers seeing whole parts or nothing, and its retry (the same part names) commits each part
exactly once. The writers are separate processes started with ``subprocess``, like two Airflow
task processes: delta-rs's runtime does not survive ``fork``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from dresscode.core import lake

pytestmark = pytest.mark.integration

DAY = "2026-05-01"
ROWS_PER_PART = 10

WRITER = """
import sys
from dresscode.core import lake

who, first, count, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(first, first + count):
    part = f"{who}-{i:04d}"
    items = [
        {"item_id": f"{part}-{r}", "user_id": f"u-{who}", "image_sha256": part, "category": "top",
         "color_names": ["blue"], "prompt_version": 2}
        for r in range(rows)
    ]
    manifest = [
        {"upload_key": f"u-{who}/{part}-{r}.jpg", "user_id": f"u-{who}", "status": "accepted",
         "attempt": 1, "run_id": who, "processed_at": "2026-05-01T00:00:00.000+00:00",
         "model_called": True}
        for r in range(rows)
    ]
    lake.write_parquet("wardrobe_items", "2026-05-01", part, items)
    lake.write_parquet("manifests", "2026-05-01", part, manifest)
    print(part, flush=True)
"""


def _writer(who: str, first: int, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, who, str(first), str(count), str(ROWS_PER_PART)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _counts(table: str, column: str) -> Counter[str]:
    return Counter(lake.read_table(table, columns=[column])[column].astype(str))


@pytest.fixture
def home(dresscode_home: Path) -> Path:
    # The writers are other processes: they find the lake through the environment, where
    # dresscode_home (and s3_lake) put it.
    assert os.environ["DRESSCODE_HOME"] == str(dresscode_home)
    return dresscode_home


@pytest.mark.parametrize(("where", "commits"), [("file", 100), ("s3", 10)])
def test_two_writers_committing_at_once_lose_and_duplicate_nothing(
    home: Path, request: pytest.FixtureRequest, where: str, commits: int
) -> None:
    if where == "s3":  # the test S3 server: commits use its conditional put
        request.getfixturevalue("s3_lake")
    writers = [_writer("a", 0, commits), _writer("b", 0, commits)]
    outputs = [w.communicate(timeout=600) for w in writers]
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err[-2000:]
        assert len([line for line in out.splitlines() if line[:2] in {"a-", "b-"}]) == commits
    for table, column in (("wardrobe_items", "item_id"), ("manifests", "upload_key")):
        counts = _counts(table, column)
        assert len(counts) == 2 * commits * ROWS_PER_PART, table  # nothing lost
        assert set(counts.values()) == {1}, table  # nothing twice


def test_a_writer_killed_mid_commit_leaves_whole_parts_and_its_retry_commits_once(
    home: Path,
) -> None:
    killed = _writer("k", 0, 60)
    # Let it commit a few parts, then kill it without warning, somewhere inside a commit.
    assert killed.stdout is not None
    parts = 0
    while parts < 5:  # five parts committed (lines that are not a part name are log lines)
        parts += killed.stdout.readline().startswith("k-")
    time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL

    items = lake.read_table("wardrobe_items", columns=["image_sha256"])
    per_part = Counter(items["image_sha256"])
    assert per_part and set(per_part.values()) == {ROWS_PER_PART}  # whole parts only
    done = len(per_part)

    retry = _writer("k", 0, 60)  # the task's retry: the same parts again, from the start
    _, err = retry.communicate(timeout=600)
    assert retry.returncode == 0, err[-2000:]
    per_part = Counter(lake.read_table("wardrobe_items", columns=["image_sha256"])["image_sha256"])
    assert len(per_part) == 60 > done and set(per_part.values()) == {ROWS_PER_PART}
    keys = _counts("manifests", "upload_key")
    assert len(keys) == 60 * ROWS_PER_PART and set(keys.values()) == {1}
