"""A drift report computed again at the Delta table versions it recorded gives the same verdict
and scores, however much the lake changed since; read at today's versions it would not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from dresscode.core import delta, lake
from dresscode.local import cli
from dresscode.monitoring import drift, drift_frames, drift_report, reproduce

DAY = datetime(2026, 5, 10, tzinfo=UTC)
COLORS = ["navy", "white", "black", "red", "green", "beige"]
CATEGORIES = ["top", "bottom", "outerwear", "shoes"]


def _photos(start: datetime, n: int, prefix: str, *, seed: int, dark: bool = False) -> None:
    """``n`` accepted photos an hour's fraction apart, each with its first item."""
    rng = np.random.default_rng(seed)
    rows, items = [], []
    for i in range(n):
        key, sha = f"{prefix}{i}/p.jpg", f"{prefix}-s{i}"
        at = (start + timedelta(minutes=5 * i)).isoformat(timespec="milliseconds")
        rows.append(
            {
                "upload_key": key,
                "user_id": key.split("/")[0],
                "upload_id": "p",
                "status": "accepted",
                "image_sha256": sha,
                "source_format": "JPEG",
                "source_width": 4000,
                "source_height": 3000,
                "width": 768,
                "height": 576,
                "brightness": float(rng.normal(60 if dark else 130, 15)),
                "prompt_version": 2,
                "n_items": int(rng.integers(1, 3 if dark else 6)),
                "model_called": False,
                "processed_at": at,
            }
        )
        items.append(
            {
                "item_id": f"{sha}-item",
                "user_id": key.split("/")[0],
                "image_sha256": sha,
                "upload_key": key,
                "prompt_version": 2,
                "category": CATEGORIES[int(rng.integers(len(CATEGORIES)))],
                "color_names": [COLORS[int(rng.integers(len(COLORS)))]],
            }
        )
    lake.write_parquet("manifests", start.date(), f"{prefix}-batch", rows)
    lake.write_parquet("wardrobe_items", start.date(), f"{prefix}-items", items)


def _recorded_report() -> tuple[drift.DriftResult, dict[str, str]]:
    """What model_monitoring does: both frames under one snapshot, the versions recorded."""
    reference = drift.Window(DAY - timedelta(days=2), DAY - timedelta(days=1), "days_before")
    current = drift.Window(DAY, DAY + timedelta(days=1), "current")
    with delta.snapshot("manifests", "wardrobe_items") as versions:
        ref = drift_frames.reference_frame(reference)
        cur = drift_frames.photo_frame(current.start, current.end)
    result = drift.detect_drift(ref, cur, min_rows=20, drift_share=0.3)
    result.lake_versions, result.reference, result.current = versions, reference, current
    return result, drift_report.write_report(result, "recorded")


def test_a_report_reproduces_at_its_versions_after_the_lake_changed(
    dresscode_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _photos(DAY - timedelta(days=2), 60, "r", seed=1)
    _photos(DAY, 60, "c", seed=2)
    result, paths = _recorded_report()
    assert not result.drifted and set(result.lake_versions) == {"manifests", "wardrobe_items"}

    # The lake moves on: late, dark photos land in the same current window, and a batch of
    # the current window is written again with other items (a re-digitization).
    _photos(DAY + timedelta(hours=1), 80, "late", seed=3, dark=True)
    _photos(DAY, 60, "c", seed=4)
    today = drift.detect_drift(
        drift_frames.reference_frame(result.reference),  # type: ignore[arg-type]
        drift_frames.photo_frame(DAY, DAY + timedelta(days=1)),
        min_rows=20,
        drift_share=0.3,
    )
    today.reference, today.current = result.reference, result.current
    # The same windows read today give another report: more photos, other scores.
    assert today.n_current == 140
    assert len(reproduce.differences(result.summary(), today.summary())) > 1

    summary = reproduce.load_summary(paths["json"])
    again = reproduce.reproduce(summary)

    assert again.reproduced, again.differences
    assert again.again["n_current"] == 60 and again.again["drifted"] is False
    assert cli.main(["drift", "reproduce", paths["json"]]) == 0
    assert "reproduced: no drift, 60 reference and 60 current photos" in capsys.readouterr().out


def test_a_changed_record_is_reported_as_not_reproduced(
    dresscode_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _photos(DAY - timedelta(days=2), 60, "r", seed=1)
    _photos(DAY, 60, "c", seed=2)
    _, paths = _recorded_report()
    summary = reproduce.load_summary(paths["json"])
    summary["n_current"] = 59  # a report that does not match its data
    summary["columns"][0]["score"] = 0.123456

    again = reproduce.reproduce(summary)

    assert not again.reproduced
    assert "n_current: recorded 59, now 60" in again.differences
    assert any(
        d.endswith("-> " + str(again.again["columns"][0]["score"])) for d in again.differences
    )


def test_a_report_without_versions_says_it_cannot_be_reproduced(dresscode_home: Path) -> None:
    _photos(DAY - timedelta(days=2), 30, "r", seed=1)
    _photos(DAY, 30, "c", seed=2)
    result, _ = _recorded_report()
    summary = result.summary()
    summary["lake_versions"] = {}
    with pytest.raises(ValueError, match="records no table versions"):
        reproduce.reproduce(summary)
