"""Re-digitize: which photos a run selects, and which earlier item each new item takes over."""

from __future__ import annotations

from pathlib import Path

from dresscode.core import config, lake
from dresscode.ingest import redigitize

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def _new(category: str, sub: str = "shirt", *colours: str) -> dict:
    return {
        "category": category,
        "subcategory": sub,
        "colors": [{"name": c, "hex": "#000000"} for c in colours],
    }


def _old(item_id: str, category: str, sub: str = "shirt", *colours: str) -> dict:
    return {
        "item_id": item_id,
        "category": category,
        "subcategory": sub,
        "color_names": list(colours),
    }


def test_match_pairs_by_category_then_subcategory_and_colours() -> None:
    old = [
        _old("navy-shirt", "top", "shirt", "navy"),
        _old("white-tee", "top", "t-shirt", "white"),
        _old("jeans", "bottom", "jeans", "blue"),
    ]
    new = [
        _new("top", "t-shirt", "white"),
        _new("top", "shirt", "navy"),
        _new("shoes", "sneakers", "white"),  # nothing of its kind before
    ]
    assert redigitize.match(new, old, {}) == ["white-tee", "navy-shirt", None]


def test_match_takes_each_earlier_item_once() -> None:
    old = [_old("only-top", "top", "shirt", "red")]
    new = [_new("top", "shirt", "blue"), _new("top", "shirt", "red")]
    assert redigitize.match(new, old, {}) == [None, "only-top"]  # the better pair wins


def test_match_sees_the_category_the_user_corrected_to() -> None:
    old = [_old("coat", "top", "jacket", "green")]  # the old digitizer called it a top
    new = [_new("outerwear", "jacket", "green")]
    assert redigitize.match(new, old, {}) == [None]
    assert redigitize.match(new, old, {"coat": "outerwear"}) == ["coat"]


def _manifest(key: str, sha: str, version: int, at: str, status: str = "accepted") -> dict:
    user, _, upload = key.partition("/")
    return {
        "upload_key": key,
        "user_id": user,
        "upload_id": upload,
        "status": status,
        "image_sha256": sha,
        "prompt_version": version,
        "processed_at": at,
    }


def test_select_takes_photos_not_at_the_target_oldest_first(dresscode_home: Path) -> None:
    rows = [
        _manifest("u1/b.jpg", SHA_B, 1, "2026-05-02T00:00:00.000+00:00"),
        _manifest("u1/a.jpg", SHA_A, 1, "2026-05-01T00:00:00.000+00:00"),
        _manifest("u2/c.jpg", SHA_C, 2, "2026-05-03T00:00:00.000+00:00"),  # at the target
        _manifest("u2/q.png", "", 1, "2026-05-03T00:00:00.000+00:00", status="quarantined"),
    ]
    lake.write_parquet("manifests", "2026-05-03", "m", rows)
    settings = config.get_settings()
    chosen = redigitize.select(2, users=[], limit=10, settings=settings)
    assert [p["upload_key"] for p in chosen] == ["u1/a.jpg", "u1/b.jpg"]
    assert {p["from_version"] for p in chosen} == {1}
    assert [
        p["upload_key"] for p in redigitize.select(2, users=[], limit=1, settings=settings)
    ] == ["u1/a.jpg"]
    assert redigitize.select(2, users=["u2"], limit=10, settings=settings) == []
    # After a v3 re-digitization and a rollback to v2, the v2 photo is selected again.
    lake.write_parquet(
        "redigitized",
        "2026-06-01",
        "r",
        [
            {
                "upload_key": "u2/c.jpg",
                "image_sha256": SHA_C,
                "prompt_version": 3,
                "processed_at": "2026-06-01T00:00:00.000+00:00",
            }
        ],
    )
    [again] = redigitize.select(2, users=["u2"], limit=10, settings=settings)
    assert again["upload_key"] == "u2/c.jpg" and again["from_version"] == 3
