"""User style features: shares, colours, empty wardrobes, unknown values, determinism."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pytest

from dresscode.features import style
from dresscode.llm import blueprints

AS_OF = datetime(2026, 5, 3, tzinfo=UTC)
CREATED = datetime(2026, 5, 3, 1, tzinfo=UTC)


def item(user: str, category: str, **extra) -> dict:
    row = {
        "item_id": f"{user}-{category}-{len(extra)}",
        "user_id": user,
        "category": category,
        "color_names": ["black"],
        "warmth": "medium",
        "formality": "casual",
        "water_resistant": False,
        "date": "2026-05-01",
    }
    row.update(extra)
    return row


def features(rows: list[dict], **kwargs) -> pd.DataFrame:
    kwargs.setdefault("created", CREATED)
    return style.style_features(pd.DataFrame(rows), as_of=AS_OF, **kwargs).set_index("user_id")


def test_vocabularies_come_from_the_digitizer_schema():
    schema = blueprints.resolve(style.SCHEMA_BLUEPRINT).output_schema
    categories = blueprints.enum_of(schema, "items", "category")
    assert style.share_columns()["category"] == [f"share_{c}" for c in categories]
    assert "share_outerwear" in style.feature_names()
    assert "formality_smart_casual" in style.feature_names()


def test_category_shares_sum_to_one_and_count_outerwear():
    out = features(
        [
            item("u1", "top"),
            item("u1", "top", water_resistant=True),
            item("u1", "outerwear", water_resistant=True),
            item("u1", "footwear"),
        ]
    )
    row = out.loc["u1"]
    assert row["wardrobe_size"] == 4
    assert row["share_top"] == pytest.approx(0.5)
    assert row["share_outerwear"] == pytest.approx(0.25)
    assert row["share_footwear"] == pytest.approx(0.25)
    assert sum(row[c] for c in style.share_columns()["category"]) == pytest.approx(1.0)
    assert row["outerwear_count"] == 1
    assert row["water_resistant_count"] == 2


def test_warmth_and_formality_shares():
    out = features(
        [
            item("u1", "top", warmth="light", formality="sport"),
            item("u1", "bottom", warmth="heavy", formality="sport"),
            item("u1", "dress", warmth="light", formality="formal"),
            item("u1", "bag", warmth="light", formality="business"),
        ]
    )
    row = out.loc["u1"]
    assert row["warmth_light"] == pytest.approx(0.75)
    assert row["warmth_heavy"] == pytest.approx(0.25)
    assert row["warmth_medium"] == 0.0
    assert row["formality_sport"] == pytest.approx(0.5)
    assert row["formality_formal"] == pytest.approx(0.25)


def test_top_colors_by_item_count_then_name_lowercased_once_per_item():
    out = features(
        [
            item("u1", "top", color_names=["Navy", "white"]),
            item("u1", "bottom", color_names=["navy"]),
            item("u1", "dress", color_names=["red", "red"]),  # one red item, not two
            item("u1", "bag", color_names=["beige"]),
            item("u1", "footwear", color_names=[]),
        ]
    )
    # navy 2 items; beige, red, white 1 each -> alphabetical among ties.
    assert out.loc["u1", "top_colors"] == ["navy", "beige", "red"]


def test_empty_wardrobe_is_a_zero_row():
    out = features([item("u1", "top")], user_ids=["u2"])
    row = out.loc["u2"]
    assert row["wardrobe_size"] == 0
    shares = [c for cols in style.share_columns().values() for c in cols]
    assert all(row[c] == 0.0 for c in shares)
    assert row["top_colors"] == []
    assert pd.isna(row["last_upload"])
    assert row["outerwear_count"] == 0


def test_no_items_at_all_still_gives_rows_for_known_users():
    out = style.style_features(pd.DataFrame(), as_of=AS_OF, user_ids=["b", "a"], created=CREATED)
    assert list(out["user_id"]) == ["a", "b"]
    assert (out["wardrobe_size"] == 0).all()


def test_unknown_category_counts_in_size_not_in_shares(caplog):
    with caplog.at_level(logging.WARNING, logger="dresscode.features.style"):
        out = features([item("u1", "top"), item("u1", "cape"), item("u1", "cape")])
    row = out.loc["u1"]
    assert row["wardrobe_size"] == 3
    assert row["share_top"] == pytest.approx(1.0)
    assert "unknown_category" in caplog.text
    assert "'cape'" in caplog.text


def test_items_after_as_of_are_left_out_and_last_upload_is_the_latest_day():
    out = features(
        [
            item("u1", "top", date="2026-04-20"),
            item("u1", "bottom", date="2026-05-02"),
            item("u1", "dress", date="2026-05-09"),  # after as_of: a replay must not see it
        ]
    )
    assert out.loc["u1", "wardrobe_size"] == 2
    assert out.loc["u1", "last_upload"] == pd.Timestamp("2026-05-02", tz="UTC")


def test_ingested_at_wins_over_the_partition_day():
    at = datetime(2026, 5, 1, 17, 30, tzinfo=UTC)
    out = features([item("u1", "top", ingested_at=at)])
    assert out.loc["u1", "last_upload"] == pd.Timestamp(at)


def test_output_types_and_timestamps():
    out = style.style_features(pd.DataFrame([item("u1", "top")]), as_of=AS_OF, created=CREATED)
    assert list(out.columns) == style.columns()
    assert out["event_timestamp"].iloc[0] == pd.Timestamp(AS_OF)
    assert out["created"].iloc[0] == pd.Timestamp(CREATED)
    assert str(out["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    for name in ("wardrobe_size", "outerwear_count", "water_resistant_count", "worn_count_30d"):
        assert out[name].dtype == "int64"
    # No worn frame given: what the user wore is 0 and empty lists, not missing.
    assert (out["worn_count_30d"].iloc[0], out["worn_colors"].iloc[0]) == (0, [])
    assert out["worn_pairs"].iloc[0] == []
    assert out["share_top"].dtype == "float64"


def test_deterministic_whatever_the_input_order():
    rows = [
        item("u2", "top", color_names=["red"]),
        item("u1", "bag", color_names=["white", "black"]),
        item("u1", "top", color_names=["white"]),
        item("u3", "dress", color_names=["green"], date="2026-05-02"),
    ]
    first = style.style_features(pd.DataFrame(rows), as_of=AS_OF, created=CREATED)
    again = style.style_features(pd.DataFrame(rows[::-1]), as_of=AS_OF, created=CREATED)
    pd.testing.assert_frame_equal(first, again)
    assert list(first["user_id"]) == ["u1", "u2", "u3"]


def test_naive_as_of_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        style.style_features(pd.DataFrame([item("u1", "top")]), as_of=datetime(2026, 5, 3))


def test_the_table_keeps_list_of_strings_when_nobody_has_a_colour(dresscode_home):
    from dresscode.core import delta, lake

    frame = features([item("u1", "top", color_names=[])], user_ids=["u2"]).reset_index()
    lake.write_parquet(style.TABLE, "2026-05-03", "night", frame[style.columns()])
    schema = pa.schema(delta.open_table(style.TABLE).schema())
    assert schema.field("top_colors").type == pa.list_(pa.string())
    assert schema.field("last_upload").type == pa.timestamp("us", "UTC")
    stored = lake.read_table(style.TABLE).sort_values("user_id")
    assert [list(c) for c in stored["top_colors"]] == [[], []]


def test_for_interval_reads_the_lake_and_writes_a_replaceable_part(dresscode_home):
    from dresscode.core import lake

    lake.write_parquet("wardrobe_items", "2026-05-01", "a", [item("u1", "top")])
    lake.write_parquet("wardrobe_items", "2026-05-04", "b", [item("u1", "bag", date=None)])
    start, end = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)
    for _ in range(2):  # a re-run replaces its part
        frame = style.style_features_for_interval(start, end, user_ids=["u9"], created=CREATED)
    assert dict(zip(frame["user_id"], frame["wardrobe_size"], strict=True)) == {"u1": 1, "u9": 0}
    stored = lake.read_table("user_style")
    assert len(stored) == 2
    assert set(stored["date"]) == {"2026-05-01"}


# --- style clusters: the item vectors in Feast's online store -----------------------------------


def _direction(axis: int) -> list[float]:
    """A unit vector of the configured size pointing along ``axis``: items on one axis cluster."""
    from dresscode.core import config

    vector = [0.0] * config.get_settings().embedding_dimension
    vector[axis] = 1.0
    return vector


def _embed(*items: tuple[str, str, str, str, int]) -> None:
    """Write (item_id, user_id, category, colour, axis) vectors online, as the embedding run
    does."""
    from dresscode.features.embeddings import colours, online

    now = datetime.now(UTC)
    online.write(
        online.open_store(apply=True),
        [
            {"item_id": i, "user_id": u, "category": c, "colour_family": colours.family(colour),
             "model": "test-model", "text_sha": "sha", "vector": _direction(axis),
             "event_timestamp": now}
            for i, u, c, colour, axis in items
        ],
    )  # fmt: skip


def test_style_clusters_name_what_the_wardrobe_is_made_of(dresscode_home):
    tops = [("t1", "navy"), ("t2", "blue"), ("t3", "light blue"), ("t4", "denim"), ("t5", "navy")]
    rows = [item("u1", "top", item_id=i, color_names=[c]) for i, c in tops]
    rows += [item("u1", "footwear", item_id=f"f{n}") for n in range(3)]
    rows.append(item("u2", "top", item_id="u2-top"))  # in the wardrobe, not embedded yet
    _embed(
        *[(i, "u1", "top", c, 0) for i, c in tops],
        *[(f"f{n}", "u1", "footwear", "black", 1) for n in range(3)],
        ("gone", "u1", "dress", "green", 2),  # an item no longer in the wardrobe
        ("other", "u3", "top", "white", 0),  # another user's
    )
    named = style.clusters_as_of(pd.DataFrame(rows), as_of=AS_OF)
    # 8 items: k = round(sqrt(8 / 2)) = 2; counting "gone" would make one of them x6 or x4.
    assert named == {"u1": ["blue top x5", "black footwear x3"]}
    out = features(rows, user_ids=["u9"], clusters=named)
    assert out.loc["u1", "style_clusters"] == ["blue top x5", "black footwear x3"]
    assert out.loc["u2", "style_clusters"] == []  # no vectors yet: empty, not an error
    assert out.loc["u9", "style_clusters"] == []  # no items at all


def test_style_clusters_of_a_small_wardrobe_are_named_by_colour_family_and_category(
    dresscode_home,
):
    rows = [
        item("u1", "top", item_id="t1", color_names=["navy"]),
        item("u1", "top", item_id="t2", color_names=["blue"]),
    ]
    _embed(("t1", "u1", "top", "navy", 0), ("t2", "u1", "top", "blue", 0))
    out = features(rows, clusters=style.clusters_as_of(pd.DataFrame(rows), as_of=AS_OF))
    assert out.loc["u1", "style_clusters"] == ["blue top x2"]


def test_style_clusters_leave_out_items_after_as_of(dresscode_home):
    rows = [
        item("u1", "top", item_id="t1", color_names=["navy"]),
        item("u1", "top", item_id="t2", color_names=["navy"], date="2026-05-09"),  # later
    ]
    _embed(("t1", "u1", "top", "navy", 0), ("t2", "u1", "top", "navy", 0))
    assert style.clusters_as_of(pd.DataFrame(rows), as_of=AS_OF) == {"u1": ["blue top x1"]}


def test_before_anything_was_embedded_the_clusters_are_empty_not_an_error(dresscode_home, caplog):
    rows = [item("u1", "top", item_id="t1")]
    with caplog.at_level(logging.INFO, logger="dresscode.features.embeddings.clusters"):
        named = style.clusters_as_of(pd.DataFrame(rows), as_of=AS_OF)
    assert named == {}
    assert "no item vectors online" in caplog.text
    assert not (dresscode_home / "vectors").exists()  # no index file any more
    assert features(rows, clusters=named).loc["u1", "style_clusters"] == []


def test_vectors_of_another_size_give_no_clusters_with_a_warning(
    dresscode_home, caplog, monkeypatch
):
    from dresscode.core import config

    monkeypatch.setenv("DRESSCODE_EMBEDDING_DIMENSION", "8")  # written under another size
    config.get_settings.cache_clear()
    _embed(("t1", "u1", "top", "navy", 0))
    monkeypatch.delenv("DRESSCODE_EMBEDDING_DIMENSION")
    config.get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="dresscode.features.embeddings.clusters"):
        named = style.clusters_as_of(pd.DataFrame([item("u1", "top", item_id="t1")]), as_of=AS_OF)
    assert named == {}
    assert "style_clusters_unavailable" in caplog.text


def test_for_interval_writes_the_style_clusters_to_the_lake(dresscode_home):
    from dresscode.core import delta, lake

    lake.write_parquet(
        "wardrobe_items",
        "2026-05-01",
        "a",
        [item("u1", "top", item_id="t1", color_names=["navy"]), item("u2", "top", item_id="t9")],
    )
    _embed(("t1", "u1", "top", "navy", 0))
    start, end = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC)
    style.style_features_for_interval(start, end, created=CREATED)
    stored = lake.read_table(style.TABLE).set_index("user_id")
    assert list(stored.loc["u1", "style_clusters"]) == ["blue top x1"]
    assert list(stored.loc["u2", "style_clusters"]) == []
    schema = pa.schema(delta.open_table(style.TABLE).schema())
    assert schema.field("style_clusters").type == pa.list_(pa.string())
