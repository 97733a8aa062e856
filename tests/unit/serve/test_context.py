"""The service's lake readers (profile city, current wardrobe, the morning's suggestion) on a
real local lake, and the weather answers shared across requests."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from dresscode.core import lake
from dresscode.core.config import get_settings
from dresscode.serve.batching import BatchLoader
from dresscode.serve.context import Readers, WeatherAnswers, city_key, lake_readers, read_inputs

DAY = date(2026, 5, 2)


def test_the_lake_readers_answer_for_one_user(two_users_lake: Path) -> None:
    settings = get_settings()
    outfits = [{"item_ids": ["tee", "jeans"], "occasion": "everyday", "reason": "r"}]
    rows = [
        {
            "user_id": "u1",
            "day": DAY.isoformat(),
            "status": "ok",
            "outfits": json.dumps(outfits),
            "prompt_name": "outfit-stylist",
            "prompt_version": "2",
            "generated_at": "2026-05-02T05:00:00",
        },
        {
            "user_id": "u2",
            "day": DAY.isoformat(),
            "status": "skipped",
            "outfits": "[]",
            "prompt_name": "outfit-stylist",
            "prompt_version": "2",
            "generated_at": "2026-05-02T05:00:00",
        },
    ]
    lake.write_parquet("outfit_suggestions", DAY, "users-x", rows)

    readers = lake_readers(settings)
    # The newest profile row wins; an unknown user is absent.
    assert readers.profile_cities(["u1", "u2", "nobody"]) == {"u1": "Rome", "u2": "Lima"}
    found = readers.wardrobes(["u1", "nobody"])
    assert sorted(i["item_id"] for i in found["u1"]) == ["jeans", "tee"] and found["nobody"] == []
    keys = [("u1", DAY), ("u2", DAY), ("u1", date(2026, 5, 3))]
    morning = readers.pregenerated(keys)
    assert list(morning) == [("u1", DAY)]  # skipped is not a suggestion to serve; no other day
    assert morning[("u1", DAY)]["outfits"] == outfits


def test_warming_without_a_feature_store_is_a_warning_not_a_failure(
    two_users_lake: Path, caplog: pytest.LogCaptureFixture
) -> None:
    readers = lake_readers(get_settings())  # a lake with no Feast registry applied
    assert readers.warm is not None
    readers.warm()
    assert "Feast's online store not ready at start" in caplog.text
    # The lake reads do not depend on it.
    assert readers.profile_cities(["u1"]) == {"u1": "Rome"}


async def test_requests_in_flight_together_are_read_in_one_batch() -> None:
    asked: list[list[str]] = []

    def read_many(keys: list[str]) -> dict[str, str]:
        asked.append(sorted(keys))
        return {k: k.upper() for k in keys if k != "ghost"}

    loader: BatchLoader[str, str] = BatchLoader(read_many)
    got = await asyncio.gather(*(loader.load(k) for k in ["a", "b", "a", "ghost", "c"]))
    assert got == ["A", "B", "A", None, "C"] and asked == [["a", "b", "c", "ghost"]]
    assert await loader.load("d") == "D" and loader.reads == 2


async def test_a_failing_batch_read_fails_its_requests_and_the_next_read_still_runs() -> None:
    calls = 0

    def read_many(keys: list[str]) -> dict[str, str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("lake unreachable")
        return {k: "ok" for k in keys}

    loader: BatchLoader[str, str] = BatchLoader(read_many)
    results = await asyncio.gather(loader.load("a"), loader.load("b"), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert await loader.load("a") == "ok"


async def test_concurrent_requests_for_one_city_share_one_fetch_and_it_is_remembered() -> None:
    calls: list[tuple[str, date]] = []

    def fetch(city: str, day: date) -> dict[str, Any]:
        calls.append((city, day))
        return {"temperature_c": 10.0}

    answers = WeatherAnswers(fetch, ttl_s=3600)
    got = await asyncio.gather(*(answers.get("Oslo", DAY) for _ in range(20)))
    assert got == [{"temperature_c": 10.0}] * 20 and calls == [("Oslo", DAY)]
    await answers.get(" oslo ", DAY)  # the same city id
    await answers.get("Bergen", DAY)
    assert calls == [("Oslo", DAY), ("Bergen", DAY)]


async def test_a_failing_weather_fetch_is_weather_unavailable_not_an_error() -> None:
    def fetch(city: str, day: date) -> dict[str, Any]:
        raise TimeoutError("provider slow")

    assert await WeatherAnswers(fetch, ttl_s=0).get("Oslo", DAY) is None


async def test_a_request_that_goes_away_does_not_cancel_the_fetch_others_wait_on() -> None:
    import threading

    release = threading.Event()

    def fetch(city: str, day: date) -> dict[str, Any]:
        release.wait(5)
        return {"temperature_c": 3.0}

    answers = WeatherAnswers(fetch, ttl_s=3600)
    leaving = asyncio.create_task(answers.get("Oslo", DAY))
    staying = asyncio.create_task(answers.get("Oslo", DAY))
    await asyncio.sleep(0.05)
    leaving.cancel()
    release.set()
    assert await staying == {"temperature_c": 3.0}
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_one_read_at_a_time_each_of_at_most_max_batch_keys() -> None:
    release = asyncio.Event()
    asked: list[list[int]] = []
    running = 0
    most_running = 0

    async def read_many(keys: list[int]) -> dict[int, int]:
        nonlocal running, most_running
        asked.append(list(keys))
        running += 1
        most_running = max(most_running, running)
        await release.wait()
        running -= 1
        return {k: k * 10 for k in keys}

    loader: BatchLoader[int, int] = BatchLoader(read_many, max_batch=4)
    first = asyncio.create_task(loader.load(0))
    await asyncio.sleep(0.01)  # the first read is on its way with one key
    rest = [asyncio.create_task(loader.load(k)) for k in range(1, 11)]
    await asyncio.sleep(0.01)
    assert asked == [[0]]  # the others wait for it, not a read each
    release.set()
    assert await first == 0 and await asyncio.gather(*rest) == [k * 10 for k in range(1, 11)]
    # Then the ten waiting, four at a time (the first of a burst go before the last is read).
    assert asked == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]] and most_running == 1


def test_one_read_answers_every_request_of_a_batch_with_all_its_inputs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked: dict[str, list[Any]] = {}

    def reader(name: str, answer: Any) -> Any:
        def read(keys: list[Any]) -> Any:
            asked[name] = list(keys)
            return answer(keys)

        return read

    readers = Readers(
        profile_cities=reader("profiles", lambda ids: {u: "Oslo" for u in ids if u != "ghost"}),
        wardrobes=reader("wardrobes", lambda ids: {u: [{"item_id": f"{u}-tee"}] for u in ids}),
        online=reader("online", lambda keys: {k: {"city_id": k[1]} for k in keys}),
        pregenerated=reader("pregenerated", lambda keys: {}),
        weather=lambda city, day: None,
    )
    keys = [("u1", DAY, None), ("u2", DAY, "Bergen"), ("ghost", DAY, None)]
    found = read_inputs(readers, keys)
    assert set(found) == {("u1", DAY, None), ("u2", DAY, "Bergen")}  # the unknown user: absent
    # The online features are those of the city asked for, else the profile's.
    assert found[("u1", DAY, None)].online == {"city_id": city_key("Oslo")}
    assert found[("u2", DAY, "Bergen")].online == {"city_id": city_key("Bergen")}
    assert found[("u2", DAY, "Bergen")].profile_city == "Oslo"
    assert found[("u1", DAY, None)].wardrobe == [{"item_id": "u1-tee"}]
    # One read per reader for the whole batch; the unknown user's wardrobe is never read.
    assert asked["profiles"] == ["ghost", "u1", "u2"] and asked["wardrobes"] == ["u1", "u2"]

    def unreachable(keys: list[Any]) -> Any:
        raise OSError("online store unreachable")

    without_online = read_inputs(dataclasses.replace(readers, online=unreachable), keys)
    assert without_online[("u1", DAY, None)].online == {}  # still answered, with the wardrobe
    assert without_online[("u1", DAY, None)].wardrobe == [{"item_id": "u1-tee"}]
    assert "online features unavailable (OSError: online store unreachable)" in caplog.text


async def test_a_request_that_goes_away_does_not_cancel_the_batch_read_others_wait_on() -> None:
    release = asyncio.Event()
    asked: list[list[str]] = []

    async def read_many(keys: list[str]) -> dict[str, str]:
        asked.append(sorted(keys))
        await release.wait()
        return {k: k.upper() for k in keys}

    loader: BatchLoader[str, str] = BatchLoader(read_many)
    leaving = asyncio.create_task(loader.load("a"))
    staying = asyncio.create_task(loader.load("a"))
    other = asyncio.create_task(loader.load("b"))
    await asyncio.sleep(0.01)  # all three wait on one read
    leaving.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await staying == "A" and await other == "B"
    assert leaving.cancelled() and asked == [["a", "b"]]
