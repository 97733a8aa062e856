"""What a feedback run reads: only what its events can point at — its users' items, photos and
earlier events, the suggestion days it names — never the rest of the lake. Shown by damaging
the rest: a run about other users never opens the damaged files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dresscode.core import config, delta, lake
from dresscode.feedback import events, references

DAY = "2026-05-02"


def _two_users_in_two_buckets() -> tuple[str, str]:
    users = [f"user-{i}" for i in range(40)]
    first = users[0]
    other = next(u for u in users if delta.user_bucket(u) != delta.user_bucket(first))
    for user in (first, other):
        lake.write_parquet(
            "wardrobe_items",
            DAY,
            f"items-{user}",
            [
                {
                    "item_id": f"{user}-i{n}",
                    "user_id": user,
                    "image_sha256": f"{user}-sha",
                    "prompt_version": 2,
                }
                for n in range(3)
            ],
        )
        lake.write_parquet(
            "feedback",
            DAY,
            f"events-{user}",
            [
                {
                    "event_id": f"{user}-e1",
                    "event_type": "item_deleted",
                    "user_id": user,
                    "event_time": f"{DAY}T10:00:00.000Z",
                    "received_at": f"{DAY}T10:00:01.000Z",
                    "item_id": f"{user}-i0",
                    "image_sha256": f"{user}-sha",
                    "prompt_version": "2",
                    "payload": "{}",
                    "source": "feedback/app.jsonl",
                    "source_sha256": "f" * 64,
                }
            ],
        )
    return first, other


def _damage_bucket_of(user: str, table: str) -> None:
    """Overwrite the files of ``user``'s bucket with garbage (a disk or upload gone wrong)."""
    opened = delta.open_table(table)
    assert opened is not None
    files = opened.file_uris(file_pruning_predicate=[(delta.BUCKET, "=", delta.user_bucket(user))])
    assert files
    for uri in files:
        Path(uri).write_bytes(b"not parquet")


def test_a_run_about_one_user_never_opens_another_users_files(dresscode_home: Path) -> None:
    settings = config.get_settings()
    mine, theirs = _two_users_in_two_buckets()
    _damage_bucket_of(theirs, "wardrobe_items")
    _damage_bucket_of(theirs, "user_events")

    prior = events.events_of([mine], settings)
    state = references.load_state(prior, settings, users=[mine], days=[])

    assert set(prior["event_id"]) == {f"{mine}-e1"}
    assert set(state.items) == {f"{mine}-i{n}" for n in range(3)}
    assert state.deleted_at == {f"{mine}-i0": f"{DAY}T10:00:00.000Z"}
    # Reading everything (what the run did before) meets the damage, and says where.
    with pytest.raises(delta.DeltaTableError, match="lake table 'wardrobe_items'"):
        references.load_state(pd.DataFrame(), settings)


def test_no_users_reads_nothing(dresscode_home: Path) -> None:
    settings = config.get_settings()
    assert events.events_of([], settings).empty
    state = references.load_state(pd.DataFrame(), settings, users=[], days=[])
    assert not state.items and not state.photos and not state.suggestions
