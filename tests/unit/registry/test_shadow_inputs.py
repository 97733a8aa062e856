"""A digitizer shadow records the manifests version it chose its photos from; replayed at that
version it gets the same photos and, against the same endpoint, the same comparison."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

from dresscode.core import delta, lake, tables
from dresscode.ingest.digitize import current_blueprint
from dresscode.llm.client import LLMClient
from dresscode.local import samples
from dresscode.registry import shadow
from dresscode.sim.testing import running_simulator

MODEL = "google/gemma-4-26B-A4B-it"


def _accept(seeds: range, day: str) -> list[str]:
    """Accepted uploads of synthetic photos, their JPEGs in images/, one commit."""
    rows, shas = [], []
    for seed in seeds:
        image, _ = samples.wardrobe_photo(seed, size=(320, 240))
        buf = io.BytesIO()
        image.save(buf, "JPEG")
        jpeg = buf.getvalue()
        sha = hashlib.sha256(jpeg).hexdigest()
        lake.write_bytes(tables.image_path(sha), jpeg)
        rows.append(
            {
                "upload_key": f"u1/p{seed}.jpg",
                "user_id": "u1",
                "status": tables.ACCEPTED,
                "image_sha256": sha,
                "processed_at": f"{day}T0{seed % 10}:00:00.000+00:00",
            }
        )
        shas.append(sha)
    lake.write_parquet("manifests", day, f"batch-{seeds.start}", rows)
    return shas


def test_a_recorded_version_replays_the_same_photos_and_the_same_comparison(
    dresscode_home: Path,
) -> None:
    first = _accept(range(0, 4), "2026-05-01")
    version = delta.current_version("manifests")
    newer = _accept(range(10, 14), "2026-05-02")  # the lake moves on after the shadow ran

    pinned = shadow.recent_photos(4, version=version)
    assert {sha for sha, _ in pinned} == set(first)
    assert {sha for sha, _ in shadow.recent_photos(4)} == set(newer)  # today's newest

    blueprint = current_blueprint("wardrobe-digitizer@2")

    async def compare(photos: list[tuple[str, bytes]], url: str) -> shadow.ShadowReport:
        async with LLMClient(url, model=MODEL, timeout_s=30, max_concurrency=4) as client:
            return await shadow.compare_digitizer(
                client, blueprint, blueprint, photos, lake_version=version
            )

    with running_simulator(served_model_name=[f"{MODEL}=sloppy"], seed=7) as url:
        report = asyncio.run(compare(pinned, url))
        again = asyncio.run(compare(shadow.recent_photos(4, version=report.lake_version), url))
    assert report.lake_version == version == again.lake_version
    assert (again.inputs, again.agreement) == (report.inputs, report.agreement)
    assert again.candidate_stats.failures == report.candidate_stats.failures
