"""Near-duplicate check: a new photo's cost as its user's history grows (1x, 10x, 100x).

    .venv/bin/python bench/near_duplicate_history.py [--new 24] [--base 20]

A user with ``base``, 10 x ``base`` and 100 x ``base`` earlier photos (distinct synthetic
wardrobe photos, normalized and fingerprinted as ingest does, their clean JPEGs held in memory
as the lake would serve them) sends ``--new`` new photos of other garments — the common case,
no copy among them. Each new photo is checked as ingest's ``batch.near_duplicate_of`` does,
against every earlier photo, each new photo reading the candidates it needs (the code before)
and against the newest ``DRESSCODE_INGEST_NEAR_DUPLICATE_CANDIDATES`` (100) with the batch's
``LabCache`` (the code now). Prints the milliseconds per new photo (median) and the earlier
photos read and converted per new photo. The synthetic photos share their layout, so their hashes are closer than most real
wardrobes': a worst case for the check.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import TYPE_CHECKING

from dresscode.core.config import get_settings
from dresscode.ingest import near_duplicates as nd
from dresscode.ingest import photos as images
from dresscode.local import samples

if TYPE_CHECKING:
    from PIL import Image


def clean(seed: int) -> tuple[bytes, nd.Fingerprint]:
    img, _ = samples.wardrobe_photo(seed, size=(1024, 768), n_items=1 + seed % 3)
    jpeg = images.normalize(samples.encode(img, "JPEG")).jpeg
    return jpeg, nd.fingerprint(nd.open_clean(jpeg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, default=24)
    parser.add_argument("--base", type=int, default=20)
    args = parser.parse_args()
    settings = get_settings()
    sizes = [args.base, 10 * args.base, 100 * args.base]
    started = time.perf_counter()
    stored: dict[str, bytes] = {}
    history: list[nd.Earlier] = []
    for i in range(max(sizes)):
        jpeg, print_ = clean(i)
        stored[f"sha-{i}"] = jpeg
        history.append(nd.Earlier(f"u/earlier-{i}.jpg", f"sha-{i}", print_))
    new = [clean(1_000_000 + i) for i in range(args.new)]
    print(
        f"{max(sizes)} earlier and {args.new} new photos prepared in {time.perf_counter() - started:.0f} s"
    )

    def load(sha: str) -> Image.Image:
        return nd.open_clean(stored[sha])

    bound = settings.ingest_near_duplicate_candidates
    print()
    print(
        "| earlier photos | compared with | ms per new photo (median) | photos read per new photo |"
    )
    print("|---:|---|---:|---:|")
    for size in sizes:
        cases = (
            ("all, each photo reads its own (before)", history[:size], False),
            (f"newest {bound}, read once per batch (now)", history[:size][-bound:], True),
        )
        for label, candidates, shared in cases:
            times: list[float] = []
            batch_labs, reads = nd.LabCache(), 0
            for jpeg, print_ in new:
                labs = batch_labs if shared else nd.LabCache()
                t0 = time.perf_counter()
                nd.find(
                    nd.open_clean(jpeg),
                    print_,
                    candidates,
                    load,
                    max_distance=settings.ingest_near_duplicate_bits,
                    max_colour_difference=settings.ingest_near_duplicate_delta_e,
                    labs=labs,
                )
                times.append((time.perf_counter() - t0) * 1000)
                reads += 0 if shared else labs.loads
            reads += batch_labs.loads
            print(f"| {size} | {label} | {statistics.median(times):.1f} | {reads / len(new):.1f} |")


if __name__ == "__main__":
    main()
