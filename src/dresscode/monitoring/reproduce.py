"""A drift report, computed again on the data it read: ``dresscode drift reproduce``.

Every drift report records what it compared — the two windows, the thresholds and the Delta
table versions its frames were read at (``lake_versions``, also MLflow tags
``dresscode.lake.<table>_version``). Reading the tables at those versions (time travel) gives
the same frames however much the lake grew since, so the verdict and every column's score come
out the same; a difference means the report cannot be trusted (or its versions were vacuumed:
``DRESSCODE_LAKE_RETENTION_HOURS`` is the window in which a report can be reproduced).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from dresscode.core import delta, lake
from dresscode.core.config import Settings, get_settings

if TYPE_CHECKING:
    from dresscode.monitoring.drift import DriftResult, DriftSummary, Window


@dataclass(frozen=True)
class Reproduction:
    """The recorded summary, the one computed again, and what differs (empty: reproduced)."""

    recorded: DriftSummary
    again: DriftSummary
    differences: list[str]

    @property
    def reproduced(self) -> bool:
        return not self.differences


def load_summary(source: str, settings: Settings | None = None) -> DriftSummary:
    """A drift summary from the lake report's JSON (path or URI) or an MLflow run id."""
    settings = settings or get_settings()
    if source.endswith(".json"):
        summary: DriftSummary = lake.read_json(lake.storage_path(source, settings))
        return summary
    import mlflow

    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    artifacts = [a.path for a in client.list_artifacts(source, "drift") if a.path.endswith(".json")]
    if not artifacts:
        raise ValueError(f"MLflow run {source} has no drift/*.json summary: not a drift run")
    uri = f"{client.get_run(source).info.artifact_uri}/{artifacts[0]}"
    return cast("DriftSummary", mlflow.artifacts.load_dict(uri))


def reproduce(summary: DriftSummary, settings: Settings | None = None) -> Reproduction:
    """Read both windows at the recorded table versions, detect again, compare."""
    from dresscode.monitoring import drift, drift_frames

    settings = settings or get_settings()
    versions = summary.get("lake_versions") or {}
    if not versions:
        raise ValueError(
            "this drift report records no table versions (written before the lake kept "
            "versions): it cannot be reproduced on the same data"
        )
    reference, current = _window(summary["reference"]), _window(summary["current"])
    with delta.at_versions(versions):
        reference_rows = drift_frames.reference_frame(reference, settings)
        current_rows = drift_frames.photo_frame(current.start, current.end, settings)
    result: DriftResult = drift.detect_drift(
        reference_rows,
        current_rows,
        min_rows=int(summary["min_rows"]),
        drift_share=float(summary["share_threshold"]),
        max_rows=int(summary["max_rows"]),
    )
    result.lake_versions = {k: int(v) for k, v in versions.items()}
    result.reference, result.current = reference, current
    again = result.summary()
    return Reproduction(summary, again, differences(summary, again))


def differences(recorded: DriftSummary, again: DriftSummary) -> list[str]:
    """What differs between two summaries: the verdict, the row counts, each column's status
    and score (scores to 1e-9: the same data give the same float)."""
    found = [
        f"{field}: recorded {recorded.get(field)!r}, now {again.get(field)!r}"
        for field in ("drifted", "n_reference", "n_current", "n_drifted", "moved")
        if recorded.get(field) != again.get(field)
    ]
    before = {c["column"]: c for c in recorded.get("columns", [])}
    for column in again.get("columns", []):
        old = before.pop(column["column"], None)
        if old is None:
            found.append(f"{column['column']}: not in the recorded report")
            continue
        if old.get("status") != column.get("status"):
            found.append(
                f"{column['column']}: status {old.get('status')} -> {column.get('status')}"
            )
        if not _same(old.get("score"), column.get("score")):
            found.append(f"{column['column']}: score {old.get('score')} -> {column.get('score')}")
    found += [f"{name}: missing now" for name in before]
    return found


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def _window(record: Any) -> Window:
    from dresscode.monitoring.drift import Window

    return Window(
        datetime.fromisoformat(record["start"]),
        datetime.fromisoformat(record["end"]),
        str(record["source"]),
        str(record.get("note") or ""),
    )


def command(source: str) -> int:
    """The CLI: 0 when reproduced, 1 when it differs (each difference printed)."""
    outcome = reproduce(load_summary(source))
    versions = ", ".join(f"{k} v{v}" for k, v in sorted(outcome.recorded["lake_versions"].items()))
    verdict = "DRIFTED" if outcome.again["drifted"] else "no drift"
    if outcome.reproduced:
        print(
            f"reproduced: {verdict}, {outcome.again['n_reference']} reference and "
            f"{outcome.again['n_current']} current photos, {outcome.again['n_columns']} columns "
            f"with the same scores, read at {versions}"
        )
        return 0
    print(f"NOT reproduced (read at {versions}):")
    for line in outcome.differences:
        print(f"  {line}")
    print(json.dumps(outcome.again, indent=1, default=str)[:2000])
    return 1
