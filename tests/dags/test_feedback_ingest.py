"""feedback_ingest through dag.test(): the demo feedback file over a real lake of digitized photos."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from dresscode.core import config, lake
from dresscode.feedback import events as feedback_events
from dresscode.feedback import labels
from dresscode.feedback import tasks as feedback
from dresscode.ingest import photos as images
from dresscode.ingest import tasks as ingest
from dresscode.local import samples, seed
from dresscode.outfits import stylist as outfits
from dresscode.registry import golden

TABLES = ("feedback", "corrected_labels", "golden_candidates")


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _digitized_photos(n: int) -> None:
    """n photos of two users as wardrobe_ingest leaves them: images, manifests, items."""
    settings = config.get_settings()
    manifests, items = [], []
    for i in range(n):
        user = f"user-{i % 2}"
        img, labels = samples.wardrobe_photo(900 + i, size=(320, 240), n_items=2)
        png = io.BytesIO()
        img.save(png, "PNG")
        clean = images.normalize(png.getvalue(), long_edge=320)
        lake.write_bytes(ingest.image_path(clean.sha256, settings), clean.jpeg)
        upload = f"{user}/photo-{i}.png"
        manifests.append(
            {
                "upload_key": upload,
                "user_id": user,
                "status": "accepted",
                "image_sha256": clean.sha256,
                "prompt_version": 1,
                "processed_at": "2026-03-01T08:00:00.000+00:00",
            }
        )
        for k, label in enumerate(labels):
            item = label.to_json()
            colors = item.pop("colors")
            items.append(
                item
                | {
                    "item_id": f"{user}-{i}-{k}",
                    "user_id": user,
                    "image_sha256": clean.sha256,
                    "upload_key": upload,
                    "prompt_version": 1,
                    "color_names": [c["name"] for c in colors],
                    "color_hexes": [c["hex"] for c in colors],
                }
            )
    lake.write_parquet("manifests", "2026-03-01", "batch-dagtest", manifests)
    lake.write_parquet("wardrobe_items", "2026-03-01", "batch-dagtest", items)
    suggestion = outfits.Suggestion(
        user_id="user-0",
        day=date(2026, 3, 2),
        outfits=[{"item_ids": ["user-0-0-0", "user-0-0-1"], "occasion": "day", "reason": "mild"}],
    )
    row = suggestion.row() | {"generated_at": datetime(2026, 3, 2, 5, tzinfo=UTC)}
    lake.write_parquet("outfit_suggestions", "2026-03-02", "users-dagtest", [row])


@pytest.fixture(scope="module")
def home(module_home) -> Iterator[dict]:
    _digitized_photos(4)
    seeded = seed.seed_feedback()
    yield {"seeded": seeded, "file": lake.read_bytes(lake.landing() / seeded.key)}


@pytest.fixture(scope="module")
def first_run(home: dict, load_dag):
    return load_dag("feedback_ingest").test()


def test_tasks_and_edges(load_dag) -> None:
    dag = load_dag("feedback_ingest")
    assert set(dag.task_dict) == {
        "discover",
        "validate_and_apply",
        "stage_golden_candidates",
        "report",
    }
    assert dag.task_dict["discover"].downstream_task_ids == {"validate_and_apply"}
    assert dag.task_dict["validate_and_apply"].downstream_task_ids == {
        "stage_golden_candidates",
        "report",
    }
    assert dag.task_dict["report"].upstream_task_ids == {
        "validate_and_apply",
        "stage_golden_candidates",
    }
    assert dag.catchup is False and "dresscode" in dag.tags


def test_a_run_applies_the_feedback_file_and_keeps_its_bad_lines(first_run, home) -> None:
    assert first_run.state == "success", _states(first_run)
    summary = first_run.get_task_instance("report").xcom_pull(task_ids="report")
    applied = summary["applied"]
    assert applied["files"] == 1 and applied["accepted"] == home["seeded"].events
    assert applied["rejected_total"] == home["seeded"].bad_lines
    events = lake.read_table("feedback")
    assert len(events) == home["seeded"].events
    assert set(events["event_type"]) == set(feedback_events.EVENT_TYPES)
    [report] = applied["reports"].values()
    kept = [json.loads(x) for x in lake.read_bytes(lake.storage_path(report)).splitlines()]
    assert len(kept) == home["seeded"].bad_lines and all(r["raw"] is not None for r in kept)
    assert feedback.discover() == []  # archived, then cleared from landing


def test_a_run_produces_labels_candidates_and_a_correction_rate(first_run) -> None:
    summary = first_run.get_task_instance("report").xcom_pull(task_ids="report")
    corrected = summary["correction"]["corrected_photos"]
    assert corrected == 4 and summary["correction"]["correction_rate"] == 1.0
    assert len(labels.latest_corrected_labels()) == corrected
    candidates = golden.latest_candidates()
    assert len(candidates) == corrected and set(candidates["status"]) == {"pending"}
    assert summary["golden"]["pending"] == corrected


def test_replaying_the_file_through_the_dag_changes_nothing(first_run, home, load_dag) -> None:
    before = {name: lake.read_table(name) for name in TABLES}
    lake.write_bytes(lake.landing() / home["seeded"].key, home["file"])

    again = load_dag("feedback_ingest").test()

    assert again.state == "success", _states(again)
    for name in TABLES:
        pd.testing.assert_frame_equal(lake.read_table(name), before[name], obj=name)
    summary = again.get_task_instance("report").xcom_pull(task_ids="report")
    assert summary["golden"]["staged"] == 0 and feedback.discover() == []


def test_a_hostile_file_and_a_photo_do_not_fail_the_run(first_run, load_dag) -> None:
    """An overflowing time, a lone surrogate and a photo under feedback/: success, one event."""
    fix = {
        "event_type": "item_corrected",
        "user_id": "user-1",
        "item_id": "user-1-1-0",
        "changes": {"pattern": "dotted"},
    }
    lines = [
        json.dumps(fix | {"event_id": "h-1", "event_time": "2026-03-01T09:00:00+00:00"}),
        json.dumps(fix | {"event_id": "h-2", "event_time": "0001-01-01T00:00:00+05:00"}),
        json.dumps(fix | {"event_id": "h-3", "event_time": "2026-03-01T09:01:00+00:00"}).replace(
            "user-1-1-0", "\\ud800"
        ),
    ]
    lake.write_bytes(lake.landing() / "feedback/hostile.jsonl", "\n".join(lines).encode())
    photo = Path(__file__).parents[1] / "corpus" / "progressive_exif_gps.jpg"
    lake.write_bytes(lake.landing() / "feedback/photo.jpg", photo.read_bytes())

    run = load_dag("feedback_ingest").test()

    assert run.state == "success", _states(run)
    applied = run.get_task_instance("report").xcom_pull(task_ids="report")["applied"]
    assert applied["accepted"] == 1
    assert applied["rejected"] == {"invalid_field": 1, "lone_surrogate": 1}
    assert [q["key"] for q in applied["quarantined"]] == ["feedback/photo.jpg"]
    assert feedback.discover() == []
