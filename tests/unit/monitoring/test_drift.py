"""Drift: Evidently on synthetic photo frames (``drift``), the photo frame from real lake parts
and reference windows (``drift_frames``), the report in the lake and in MLflow (SQLite)
(``drift_report``)."""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dresscode.core import config, lake
from dresscode.llm import blueprints
from dresscode.monitoring import drift, drift_frames, drift_report
from dresscode.registry import prompt_registry as registry

CATEGORIES = ["top", "bottom", "dress", "outerwear", "footwear", "bag", "accessory"]
COLORS = ["black", "white", "navy", "grey", "beige", "red"]
DAY = datetime(2026, 5, 10, tzinfo=UTC)


def photos(n: int, seed: int, *, dark: bool = False) -> pd.DataFrame:
    """A photo frame like photo_frame's; ``dark`` = dim photos the model finds fewer items in."""
    rng = np.random.default_rng(seed)
    n_items = rng.poisson(0.8 if dark else 2.5, n)
    empty = n_items == 0
    return pd.DataFrame(
        {
            "source_bytes": rng.lognormal(14.5, 0.4, n).round(),
            "source_megapixels": rng.choice([3.1, 8.0, 12.2], n, p=[0.2, 0.3, 0.5]),
            "source_aspect": rng.choice([0.75, 1.333], n),
            "brightness": rng.normal(70 if dark else 125, 20, n),
            "source_format": rng.choice(["JPEG", "HEIF", "PNG"], n, p=[0.6, 0.3, 0.1]),
            "n_items": n_items,
            "primary_category": np.where(empty, "none", rng.choice(CATEGORIES, n)),
            "primary_color": np.where(empty, "none", rng.choice(COLORS, n)),
            "latency_ms": rng.gamma(8, 250, n),
            "ttft_ms": rng.gamma(8, 40, n),
            "completion_tokens": 40 + 90 * n_items + rng.integers(0, 20, n),
        }
    )


def detect(reference: pd.DataFrame, current: pd.DataFrame, **kw) -> drift.DriftResult:
    return drift.detect_drift(reference, current, **({"min_rows": 30, "drift_share": 0.3} | kw))


def by_column(result: drift.DriftResult) -> dict[str, drift.ColumnDrift]:
    return {c.column: c for c in result.columns}


# --- detect_drift ------------------------------------------------------------------------------


def test_windows_from_one_distribution_are_not_drifted_at_any_share() -> None:
    result = detect(photos(2000, seed=1), photos(2000, seed=2), drift_share=0.0)

    assert not result.drifted
    assert result.moved() == []
    assert [c.status for c in result.columns] == ["stable"] * len(drift.DRIFT_COLUMNS)
    assert {c.stattest for c in result.columns} == {"wasserstein", "jensenshannon"}
    assert "<html" in result.html.lower()


def test_a_dark_shift_is_drifted_and_moved_names_its_columns_largest_first() -> None:
    result = detect(photos(2000, seed=1), photos(2000, seed=2, dark=True))

    moved = result.moved()
    assert result.drifted
    assert {"brightness", "n_items", "primary_category"} <= {c.column for c in moved}
    assert "latency_ms" not in {c.column for c in moved}
    assert result.drift_share == len(moved) / len(drift.DRIFT_COLUMNS)
    effects = [c.effect for c in moved]
    assert effects == sorted(effects, reverse=True) and effects[-1] >= 1.0
    summary = json.loads(json.dumps(result.summary(), allow_nan=False))
    assert summary["moved"] == [c.column for c in moved]
    assert summary["n_drifted"] == len(moved) and summary["drifted"] is True


def test_small_windows_use_p_value_tests_and_still_see_the_dark_shift() -> None:
    result = detect(photos(300, seed=1), photos(300, seed=2, dark=True))

    columns = by_column(result)
    assert columns["brightness"].stattest == "ks"
    assert columns["primary_category"].stattest == drift.HOMOGENEITY
    assert columns["source_format"].stattest == drift.HOMOGENEITY
    assert result.drifted
    assert {"brightness", "n_items", "primary_category"} <= {c.column for c in result.moved()}


def test_label_test_flags_same_distribution_windows_at_its_nominal_rate() -> None:
    # Evidently's own "chisquare" takes the reference shares as exact and flags ~40% here.
    rng = np.random.default_rng(0)
    flagged = sum(
        drift._chi2_homogeneity(
            pd.Series(rng.choice(CATEGORIES, 300)),
            pd.Series(rng.choice(CATEGORIES, 300)),
            None,
            0.05,
        )[1]
        for _ in range(400)
    )
    assert flagged / 400 < 0.08


def test_a_reference_with_too_few_rows_is_not_enough_data_never_drift(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="dresscode.monitoring.drift"):
        result = detect(photos(20, seed=1), photos(2000, seed=2, dark=True))

    assert not result.drifted and result.drift_share == 0.0 and result.html == ""
    assert {c.status for c in result.columns} == {"not_enough_data"}
    assert {(c.n_reference, c.n_current) for c in result.columns} == {(20, 2000)}
    assert caplog.text.count("reason: not_enough_data") == len(drift.DRIFT_COLUMNS)


def test_an_empty_current_window_is_not_enough_data(dresscode_home: Path) -> None:
    empty = drift_frames.photo_frame(DAY, DAY + timedelta(days=1))

    result = detect(photos(500, seed=1), empty)

    assert list(empty.columns) == [*drift_frames.ID_COLUMNS, *drift.DRIFT_COLUMNS] and empty.empty
    assert not result.drifted and result.n_current == 0
    assert {c.status for c in result.columns} == {"not_enough_data"}


def test_nan_columns_count_only_their_values_and_sparse_ones_are_not_tested() -> None:
    reference, current = photos(2000, seed=1), photos(2000, seed=2, dark=True)
    current["ttft_ms"] = np.nan  # e.g. a client that stopped streaming
    reference.loc[reference.index[10:], "latency_ms"] = np.nan  # 10 values left
    current.loc[current.index[::3], "brightness"] = np.nan
    current.loc[current.index[:5], "source_bytes"] = np.inf
    reference = reference.drop(columns=["completion_tokens"])  # an older baseline

    result = detect(reference, current)

    columns = by_column(result)
    assert columns["ttft_ms"].status == "not_enough_data" and columns["ttft_ms"].n_current == 0
    assert columns["latency_ms"].status == "not_enough_data"
    assert columns["latency_ms"].n_reference == 10
    assert columns["completion_tokens"].n_reference == 0
    assert columns["completion_tokens"].status == "not_enough_data"
    assert columns["brightness"].status == "drifted"
    assert columns["brightness"].n_current == 2000 - len(current.index[::3])
    assert columns["source_bytes"].n_current == 1995
    tested = [c for c in result.columns if c.status != "not_enough_data"]
    assert len(tested) == len(drift.DRIFT_COLUMNS) - 3
    assert result.drift_share == len(result.moved()) / len(tested)


def test_max_rows_tests_the_same_seeded_sample_every_time() -> None:
    reference, current = photos(5000, seed=1), photos(5000, seed=2, dark=True)

    first = detect(reference, current, max_rows=400, seed=7)
    again = detect(reference, current, max_rows=400, seed=7)

    assert (first.n_reference, first.n_current) == (400, 400)
    assert [c.score for c in first.columns] == [c.score for c in again.columns]
    assert by_column(first)["brightness"].stattest == "ks"  # a small sample's test


# --- photo_frame -------------------------------------------------------------------------------


def manifest(key: str, status: str, at: str, **fields) -> dict:
    row = {
        "upload_key": key,
        "user_id": key.split("/")[0],
        "upload_id": key.split("/")[1].split(".")[0],
        "status": status,
        "raw_sha256": None,
        "image_sha256": None,
        "reason_code": None,
        "reason": None,
        "source_format": "JPEG",
        "source_bytes": 2_000_000,
        "source_width": 4000,
        "source_height": 3000,
        "width": 768,
        "height": 576,
        "brightness": 120.0,
        "prompt_version": 2,
        "n_items": None,
        "model_called": False,
        "attempt": 1,
        "run_id": "manual",
        "processed_at": at,
    }
    return row | fields


def call(sha: str, at: str, latency: float, *, version: str = "2", tokens: int = 300) -> dict:
    return {
        "request_id": f"req-{sha}-{at}",
        "ts": at,
        "purpose": "digitize",
        "prompt_name": "wardrobe-digitizer",
        "prompt_version": version,
        "latency_ms": latency,
        "ttft_ms": latency / 10,
        "completion_tokens": tokens,
        "image_sha256": sha,
    }


def item(key: str, sha: str, category: str, colors: list[str]) -> dict:
    return {
        "item_id": f"{sha}-{category}",
        "user_id": key.split("/")[0],
        "image_sha256": sha,
        "upload_key": key,
        "prompt_version": 2,
        "category": category,
        "color_names": colors,
    }


def test_photo_frame_keeps_the_latest_accepted_row_per_upload_in_the_window(
    dresscode_home: Path,
) -> None:
    day = "2026-05-10"
    lake.write_parquet(
        "manifests",
        day,
        "batch-a",
        [
            manifest("u1/a.jpg", "accepted", "2026-05-10T08:00:00.000+00:00", image_sha256="s1", n_items=2, model_called=True),
            manifest("u1/b.jpg", "digitize_failed", "2026-05-10T09:00:00.000+00:00", image_sha256="s2", model_called=True),
            manifest("u2/c.png", "quarantined", "2026-05-10T10:00:00.000+00:00", reason_code="truncated"),
            manifest("u2/d.jpg", "duplicate", "2026-05-10T10:05:00.000+00:00", image_sha256="s1"),
            manifest("u3/e.heic", "accepted", "2026-05-10T11:00:00.000+00:00", image_sha256="s3", n_items=1, source_format="HEIF"),
        ],
    )  # fmt: skip
    lake.write_parquet(
        "manifests",
        day,
        "batch-b",
        [
            manifest("u1/b.jpg", "accepted", "2026-05-10T09:30:00.000+00:00", image_sha256="s2", n_items=0, model_called=True, brightness=15.0),
        ],
    )  # fmt: skip
    # A run started the evening before and processed after midnight; one photo on each side.
    lake.write_parquet(
        "manifests",
        "2026-05-09",
        "batch-c",
        [
            manifest("u4/f.jpg", "accepted", "2026-05-09T23:59:59.999+00:00", image_sha256="s4", n_items=1, model_called=True),
            manifest("u6/h.jpg", "accepted", "2026-05-10T00:30:00.000+00:00", image_sha256="s6", n_items=1, model_called=True, source_width=3000, source_height=4000),
        ],
    )  # fmt: skip
    lake.write_parquet(
        "manifests",
        "2026-05-11",
        "batch-d",
        [manifest("u5/g.jpg", "accepted", "2026-05-11T00:00:00.000+00:00", image_sha256="s5", n_items=1, model_called=True)],
    )  # fmt: skip
    lake.write_parquet(
        "inference_log",
        day,
        "calls-1",
        [
            call("s1", "2026-05-10T07:00:00.000+00:00", 9999.0, version="1"),
            call("s1", "2026-05-10T08:00:05.000+00:00", 2000.0),
            call("s2", "2026-05-10T09:00:04.000+00:00", 120000.0, tokens=4096),
            call("s2", "2026-05-10T09:30:03.000+00:00", 1500.0, tokens=60),
            call("s3", "2026-05-10T11:00:02.000+00:00", 7777.0),  # another user's earlier call
            call("s6", "2026-05-10T00:30:04.000+00:00", 1800.0),
        ],
    )
    # Outfit calls have no image_sha256 column at all.
    lake.write_parquet(
        "inference_log",
        day,
        "calls-2",
        [{"request_id": "o1", "ts": "2026-05-10T06:00:00.000+00:00", "purpose": "outfit", "prompt_version": "1", "latency_ms": 5.0}],
    )  # fmt: skip
    lake.write_parquet(
        "wardrobe_items",
        day,
        "items-1",
        [
            item("u1/a.jpg", "s1", "top", ["Navy", "white"]),
            item("u1/a.jpg", "s1", "bottom", ["black"]),
            item("u3/e.heic", "s3", "dress", [" Red"]),
        ],
    )

    frame = drift_frames.photo_frame(DAY, DAY + timedelta(days=1))

    assert list(frame.columns) == [*drift_frames.ID_COLUMNS, *drift.DRIFT_COLUMNS]
    assert frame["upload_key"].tolist() == ["u6/h.jpg", "u1/a.jpg", "u1/b.jpg", "u3/e.heic"]
    rows = frame.set_index("upload_key")
    a, b, e, h = (rows.loc[k] for k in ("u1/a.jpg", "u1/b.jpg", "u3/e.heic", "u6/h.jpg"))
    assert (a["primary_category"], a["primary_color"], a["latency_ms"]) == ("top", "navy", 2000.0)
    assert (a["source_megapixels"], a["source_aspect"], a["prompt_version"]) == (12.0, 4 / 3, "2")
    assert (b["n_items"], b["primary_category"], b["primary_color"]) == (0, "none", "none")
    assert (b["brightness"], b["latency_ms"], b["completion_tokens"]) == (15.0, 1500.0, 60)
    assert (e["source_format"], e["primary_category"], e["primary_color"]) == (
        "HEIF",
        "dress",
        "red",
    )
    assert math.isnan(e["latency_ms"])  # its answer came from the cache: no call of its own
    assert h["source_aspect"] == 0.75 and h["latency_ms"] == 1800.0
    assert pd.isna(h["primary_category"])  # items missing from the lake: unknown, not 'none'


# --- reference windows -------------------------------------------------------------------------


def accepted_photos(start: datetime, count: int, every: timedelta) -> None:
    rows = [
        manifest(f"u{i}/p{i}.jpg", "accepted", (start + i * every).isoformat(timespec="milliseconds"), image_sha256=f"s{i}", n_items=1)
        for i in range(count)
    ]  # fmt: skip
    lake.write_parquet("manifests", start.date(), f"photos-{start:%H%M}-{count}", rows)


def test_reference_is_the_days_since_the_promotion_when_they_hold_enough_photos(
    dresscode_home: Path,
) -> None:
    promoted = DAY - timedelta(days=2, hours=12)
    accepted_photos(promoted + timedelta(hours=1), 40, timedelta(minutes=30))
    accepted_photos(promoted - timedelta(hours=5), 10, timedelta(minutes=10))  # before it

    window = drift_frames.reference_window(DAY, last_promotion=promoted)

    assert (window.source, window.start, window.end) == ("since_promotion", promoted, DAY)
    assert "40 photos" in window.note
    assert len(drift_frames.reference_frame(window)) == 40


def test_reference_falls_back_to_the_days_before_with_a_reason(dresscode_home: Path) -> None:
    promoted = DAY - timedelta(days=1)
    accepted_photos(promoted + timedelta(hours=1), 5, timedelta(minutes=30))
    week_before = (DAY - timedelta(days=7), DAY)

    few = drift_frames.reference_window(DAY, last_promotion=promoted)
    never = drift_frames.reference_window(DAY, last_promotion=None)
    old = drift_frames.reference_window(DAY, last_promotion=DAY - timedelta(days=30))

    for window in (few, never, old):
        assert (window.source, window.start, window.end) == ("days_before", *week_before)
    assert "only 5 photos since the promotion" in few.note
    assert "never promoted" in never.note
    assert "is older" in old.note


def test_a_frozen_baseline_replaces_the_reference_window(
    dresscode_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accepted_photos(DAY - timedelta(days=20), 35, timedelta(hours=1))
    frozen = drift_frames.photo_frame(DAY - timedelta(days=21), DAY - timedelta(days=10))
    path = tmp_path / "baseline.parquet"
    frozen.to_parquet(path, index=False)
    monkeypatch.setenv("DRESSCODE_DRIFT_BASELINE_URI", path.as_uri())
    config.get_settings.cache_clear()

    window = drift_frames.reference_window(DAY, last_promotion=DAY - timedelta(days=1))

    assert window.source == "baseline" and path.as_uri() in window.note
    assert window.start == frozen["processed_at"].min()
    assert window.end == frozen["processed_at"].max()
    pd.testing.assert_frame_equal(drift_frames.reference_frame(window), frozen)


def test_a_missing_baseline_is_an_error_naming_the_setting(
    dresscode_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRESSCODE_DRIFT_BASELINE_URI", (tmp_path / "nope.parquet").as_uri())
    config.get_settings.cache_clear()

    with pytest.raises(drift.DriftError, match=r"DRESSCODE_DRIFT_BASELINE_URI=.*nope\.parquet"):
        drift_frames.reference_window(DAY, last_promotion=None)


# --- report, MLflow ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dark_result() -> drift.DriftResult:
    result = detect(photos(2000, seed=1), photos(2000, seed=2, dark=True))
    result.reference = drift.Window(DAY - timedelta(days=7), DAY, "days_before", "never promoted")
    result.current = drift.Window(DAY, DAY + timedelta(days=1), "current")
    return result


def test_last_promotion_is_when_production_last_moved(mlflow_uri: str) -> None:
    path = config.REPO_ROOT / "include" / "prompts" / "wardrobe-digitizer" / "v1.yaml"
    v1 = blueprints.from_mapping(yaml.safe_load(path.read_text()), "include/prompts/v1")
    registry.sync("wardrobe-digitizer", [v1])
    assert drift_frames.last_promotion() is None

    done = registry.promote("wardrobe-digitizer", 1, actor="alice", reason="first release")

    assert drift_frames.last_promotion() == datetime.fromisoformat(done.at)
    assert drift_frames.last_promotion("outfit-stylist") is None


def test_write_report_stores_html_and_a_json_summary_that_round_trips(
    dresscode_home: Path, dark_result: drift.DriftResult
) -> None:
    paths = drift_report.write_report(dark_result, "wardrobe-digitizer")

    assert paths["html"].endswith("/reports/drift/date=2026-05-10/wardrobe-digitizer.html")
    assert paths["json"].endswith("/reports/drift/date=2026-05-10/wardrobe-digitizer.json")
    stored = lake.read_json(lake.storage_path(paths["json"]))
    assert stored == json.loads(json.dumps(dark_result.summary()))
    assert stored["reference"]["source"] == "days_before"
    html = lake.read_bytes(lake.storage_path(paths["html"])).decode()
    assert html == dark_result.html


def test_a_report_with_nothing_tested_still_writes_a_page_saying_why(
    dresscode_home: Path,
) -> None:
    result = detect(photos(5, seed=1), photos(5, seed=2))

    paths = drift_report.write_report(result, "quiet-night", day="2026-05-11")

    html = lake.read_bytes(lake.storage_path(paths["html"])).decode()
    assert "not enough data" in html and "brightness" in html
    assert lake.read_json(lake.storage_path(paths["json"]))["n_tested"] == 0


def test_log_to_mlflow_records_the_verdict_scores_and_both_files(
    mlflow_uri: str, dark_result: drift.DriftResult
) -> None:
    from mlflow import MlflowClient

    paths = drift_report.write_report(dark_result, "wardrobe-digitizer")

    run_id = drift_report.log_to_mlflow(dark_result, paths, "drift 2026-05-10")

    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == drift_report.EXPERIMENT
    assert run.data.metrics["drift_share"] == pytest.approx(dark_result.drift_share)
    assert run.data.metrics["drifted"] == 1.0
    brightness = by_column(dark_result)["brightness"].score
    assert run.data.metrics["score.brightness"] == pytest.approx(brightness)
    assert run.data.tags["dresscode.drift.reference"].startswith("days_before [2026-05-03")
    names = {a.path for a in client.list_artifacts(run_id, "drift")}
    assert names == {"drift/wardrobe-digitizer.html", "drift/wardrobe-digitizer.json"}
    local = client.download_artifacts(run_id, "drift/wardrobe-digitizer.json")
    assert json.loads(Path(local).read_text()) == lake.read_json(lake.storage_path(paths["json"]))


def test_log_to_mlflow_unreachable_keeps_the_lake_report_and_warns(
    dresscode_home: Path,
    dark_result: drift.DriftResult,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import mlflow.tracking.request_header.registry  # noqa: F401  (one-off import, not network)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    config.get_settings.cache_clear()
    paths = drift_report.write_report(dark_result, "wardrobe-digitizer")

    with caplog.at_level(logging.WARNING, logger="dresscode.monitoring.drift_report"):
        run_id = drift_report.log_to_mlflow(dark_result, paths, "drift 2026-05-10")

    assert run_id is None
    assert "reason: mlflow_unreachable" in caplog.text
    assert lake.exists(lake.storage_path(paths["json"]))


# --- hostile model text: labels are closed vocabularies, the report never carries markup -------

# The 30-character colour name (within the digitizer schema) that reached the report as markup.
SCRIPT_BREAKOUT = "</script><svg onload=alert(1)>"
_FRAGMENTS = (
    "</script>", "</ScRiPt >", "<svg onload=alert(1)>", "<img src=x onerror=alert(1)>",
    "<script>", "\"'><", "</style>", "<!--", "-->", "]]>", "<iframe src=javascript:alert(1)>",
    "&#x3c;", "\u2028", "\\u003c/script\\u003e", "<\x00script>", "`${alert(1)}`", "{{7*7}}",
    "navy", "red", " ", "é", "\U0001f600",
)  # fmt: skip


def hostile_names(n: int, seed: int, max_len: int = 30) -> list[str]:
    """``n`` distinct model answers for a colour or category name, each carrying markup: fragments
    of known payloads glued at random, cut to the schema's length (a ``<`` always survives)."""
    rng = np.random.default_rng(seed)
    names = {SCRIPT_BREAKOUT}
    while len(names) < n:
        parts = rng.choice(len(_FRAGMENTS), size=int(rng.integers(2, 6)))
        name = "".join(_FRAGMENTS[i] for i in parts)[:max_len]
        if "<" in name and len(name.strip()) >= 12:
            names.add(name)
    return sorted(names)


def plain_label(value: object) -> bool:
    return (
        isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.+-]*", value) is not None
    )


def write_photos_with_items(
    start: datetime, colors: list[str], categories: list[str], prefix: str
) -> None:
    """One accepted photo per (colour, category) pair, an hour apart, with that first item."""
    rows, items = [], []
    for i, (color, category) in enumerate(zip(colors, categories, strict=True)):
        key, sha = f"{prefix}{i}/p.jpg", f"{prefix}-s{i}"
        at = (start + timedelta(minutes=10 * i)).isoformat(timespec="milliseconds")
        rows.append(
            manifest(
                key,
                "accepted",
                at,
                image_sha256=sha,
                n_items=1,
                source_format=["jpeg", "HEIF", "<b>x</b>"][i % 3],
            )
        )
        items.append(item(key, sha, category, [color, "white"]))
    lake.write_parquet("manifests", start.date(), f"{prefix}-batch", rows)
    lake.write_parquet("wardrobe_items", start.date(), f"{prefix}-items", items)


def test_model_names_reach_the_photo_frame_only_from_closed_vocabularies(
    dresscode_home: Path,
) -> None:
    hostile = hostile_names(40, seed=7)
    colors = [*hostile, "Navy", " light blue ", "teal"]
    categories = [*hostile[::-1], "TOP", "dress", "hat"]
    write_photos_with_items(DAY, colors, categories, "u")

    frame = drift_frames.photo_frame(DAY, DAY + timedelta(days=1))

    vocab = drift_frames.vocabularies()
    for col in drift.LABEL_COLUMNS:
        values = set(frame[col].dropna().astype(str))
        assert values <= vocab[col], (col, values - vocab[col])
    by_key = frame.set_index("upload_key")
    assert by_key.loc["u40/p.jpg", ["primary_color", "primary_category"]].tolist() == [
        "navy",
        "top",
    ]
    assert by_key.loc["u41/p.jpg", "primary_color"] == "light blue"
    assert by_key.loc["u42/p.jpg", "primary_category"] == "other"  # 'hat' is not in the enum
    assert (frame["primary_color"].iloc[:40] == "other").all()
    assert set(frame["source_format"].astype(str)) == {"JPEG", "HEIF", "other"}


def test_a_payload_in_a_colour_name_never_reaches_the_drift_report(dresscode_home: Path) -> None:
    # Through the real pipeline functions: lake parts -> photo_frame -> detect_drift -> write_report.
    hostile = hostile_names(30, seed=11)
    calm = ["navy", "white", "black"] * 20
    write_photos_with_items(DAY - timedelta(days=2), calm, ["top"] * len(calm), "r")
    write_photos_with_items(DAY, [*hostile, *calm[:30]], ["top", "<script>x</script>top"] * 30, "c")
    reference = drift_frames.photo_frame(DAY - timedelta(days=2), DAY - timedelta(days=1))
    current = drift_frames.photo_frame(DAY, DAY + timedelta(days=1))

    result = drift.detect_drift(reference, current, min_rows=20, drift_share=0.3)
    paths = drift_report.write_report(result, "hostile", day="2026-05-10")

    html = lake.read_bytes(lake.storage_path(paths["html"])).decode()
    assert by_column(result)["primary_color"].status == "drifted"  # 'other' still shows up
    assert "<svg onload" not in html and "<img src=x onerror" not in html
    for name in hostile:
        assert name not in html
    assert "<script>x</script>" not in html


def test_labels_passed_straight_to_detect_drift_are_hashed_unless_plain_words() -> None:
    # A frozen baseline or a bench frame skips photo_frame: the drift code itself must not let
    # markup through.
    hostile = hostile_names(12, seed=3)
    reference = photos(300, seed=1)
    current = photos(300, seed=2)
    current["primary_color"] = [hostile[i % len(hostile)] for i in range(len(current))]

    result = detect(reference, current)

    for name in hostile:
        assert name not in result.html
    assert "<svg onload" not in result.html
    assert by_column(result)["primary_color"].status == "drifted"


def test_a_frozen_baseline_with_free_text_labels_is_closed_when_read(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = photos(50, seed=4)
    baseline["primary_color"] = [SCRIPT_BREAKOUT, "Navy"] * 25
    baseline["processed_at"] = DAY.isoformat()
    uri = f"{lake.root()}/baselines/b.parquet"
    lake.write_bytes(lake.storage_path(uri), lake.to_parquet_bytes(baseline))
    monkeypatch.setenv("DRESSCODE_DRIFT_BASELINE_URI", uri)
    config.get_settings.cache_clear()

    frame = drift_frames.reference_frame(drift_frames.reference_window(DAY, last_promotion=None))

    assert frame["primary_color"].value_counts().to_dict() == {"navy": 25, "other": 25}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_inert_label_lets_only_plain_words_through(value: str) -> None:
    label = drift.inert_label(value)

    if plain_label(value) and len(value) <= 40:
        assert label == value
    else:
        assert re.fullmatch(r"x-[0-9a-f]{12}", label)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=30), st.sampled_from(COLORS)), min_size=1))
def test_closed_labels_map_any_text_into_the_vocabulary(values: list[str | None]) -> None:
    frame = pd.DataFrame({"primary_color": values, "primary_category": values})

    closed = drift_frames.closed_labels(frame)

    vocab = drift_frames.vocabularies()
    for col in ("primary_color", "primary_category"):
        assert set(closed[col].dropna().astype(str)) <= vocab[col]
        assert closed[col].isna().tolist() == [v is None for v in values]


def test_label_vocabularies_are_the_blueprint_enums_and_the_palette() -> None:
    from dresscode.local import samples
    from dresscode.sim import vision

    vocab = drift_frames.vocabularies()

    assert set(samples.PALETTE) | set(vision.PALETTE) == drift_frames.COLORS
    schemas = [b.output_schema for b in blueprints.versions_in_git("wardrobe-digitizer")]
    enums = {c for s in schemas for c in blueprints.enum_of(s, "items", "category")}
    assert vocab["primary_category"] == enums | {"none", "other"}
    assert set(samples.CATEGORIES) <= vocab["primary_category"]
    assert all(plain_label(v) for labels in vocab.values() for v in labels)
