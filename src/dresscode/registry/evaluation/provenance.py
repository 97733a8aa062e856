"""What an evaluation ran on: the golden set's content hash and the code's git commit.

Two scores are comparable only when they were made on the same data (DESIGN.md, principle 8):
every evaluation run records :func:`golden_photos_hash` (digitizer) or
:func:`scenarios_hash` (stylist) and :func:`git_commit` as tags on its MLflow run, and the
gate metrics on the prompt version carry the same hash, so the regression gate can tell a
record made on another golden set from one made on this set.

The hashes cover what the scores depend on and nothing else: for a photo, its id, the sha256
of the JPEG sent and its labels; for a scenario, everything but the file it came from. Order
does not matter (sorted by id). The commit is ``git rev-parse HEAD`` of the checkout, with
``+dirty`` when tracked files differ from it, or ``unknown`` outside a git checkout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import subprocess
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dresscode.core.config import REPO_ROOT

if TYPE_CHECKING:
    from dresscode.registry.evaluation.stylist import Scenario
    from dresscode.registry.golden import GoldenPhoto

log = logging.getLogger(__name__)

UNKNOWN_COMMIT = "unknown"
# The tags every evaluation run carries (docs/evaluation.md, "What a run records").
GOLDEN_HASH_TAG = "dresscode.golden_hash"
GOLDEN_SET_TAG = "dresscode.golden_set"
GIT_COMMIT_TAG = "dresscode.git_commit"
MLFLOW_GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own, shown in its UI


def _digest(rows: Iterable[dict[str, Any]]) -> str:
    lines = sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def golden_photos_hash(photos: Sequence[GoldenPhoto]) -> str:
    """The content hash of a set of golden photos: ids, JPEG hashes and labels."""
    return _digest({"id": p.id, "image_sha256": p.image_sha256, "items": p.items} for p in photos)


def scenarios_hash(scenarios: Sequence[Scenario]) -> str:
    """The content hash of a set of outfit scenarios (everything but their file names)."""
    return _digest(
        {k: v for k, v in dataclasses.asdict(s).items() if k != "source"} for s in scenarios
    )


def git_commit() -> str:
    """The checkout's commit (``+dirty`` if tracked files changed), or ``unknown``."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("no git commit to record (%s): evaluations say %r", exc, UNKNOWN_COMMIT)
        return UNKNOWN_COMMIT
    return head + ("+dirty" if dirty else "")


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return done.stdout.strip()


def run_tags(golden_set: str, golden_hash: str) -> dict[str, str]:
    """The provenance tags of one evaluation run."""
    commit = git_commit()
    return {
        GOLDEN_SET_TAG: golden_set,
        GOLDEN_HASH_TAG: golden_hash,
        GIT_COMMIT_TAG: commit,
        MLFLOW_GIT_COMMIT_TAG: commit.removesuffix("+dirty"),
    }
