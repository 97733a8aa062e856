"""Near-duplicate photos: recall and precision of ingest's check over its two thresholds.

    .venv/bin/python bench/near_duplicates.py [--originals 60]

Draws the near-duplicate set (dresscode.local.near_duplicate_set: re-compressed, resized,
10 %-cropped, EXIF-rotated and screenshot copies, plus recoloured and repatterned hard
negatives), normalizes every photo as ingest does, and compares every copy with **every**
original as if one user had sent them all (harder than ingest, which compares a user's own
photos). For each pHash bit limit and ΔE limit it prints recall (copies matched to their own
original) and precision (matches that were right), and the fingerprint and check costs.
"""

from __future__ import annotations

import argparse
import time

from dresscode.ingest import near_duplicates as nd
from dresscode.ingest import photos as images
from dresscode.local import near_duplicate_set

BITS = (8, 10, 12, 14)
DELTA_E = (4.0, 5.0, 5.5, 6.0, 7.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--originals", type=int, default=60)
    args = parser.parse_args()
    found = near_duplicate_set.near_duplicate_set(args.originals)

    def clean(raw: bytes):  # type: ignore[no-untyped-def]
        return nd.open_clean(images.normalize(raw).jpeg)

    originals = {pid: clean(raw) for pid, raw in found.originals.items()}
    started = time.perf_counter()
    prints = {pid: nd.fingerprint(p) for pid, p in originals.items()}
    per_print = (time.perf_counter() - started) / len(prints)
    # per copy and original: the colour difference of the best window pair within each bit limit
    results = []
    checks, check_s = 0, 0.0
    for copy in found.copies:
        picture = clean(copy.raw)
        mine = nd.fingerprint(picture)
        row = {}
        for pid, theirs in prints.items():
            pairs = [p for p in nd.window_pairs(mine, theirs) if p[0] <= max(BITS)]
            best: dict[int, float] = {}
            for bits, i, j in pairs:
                t = time.perf_counter()
                delta = nd.colour_difference(picture, i, originals[pid], j)
                check_s += time.perf_counter() - t
                checks += 1
                for limit in BITS:
                    if bits <= limit:
                        best[limit] = min(best.get(limit, 99.0), delta)
            row[pid] = best
        results.append((copy, row))
    print(
        f"{len(found.originals)} originals, {len(found.copies)} copies "
        f"({sum(c.positive for c in found.copies)} near-duplicates, "
        f"{sum(not c.positive for c in found.copies)} hard negatives); "
        f"fingerprint {per_print * 1000:.0f} ms/photo, colour check {check_s / max(checks, 1) * 1000:.1f} ms"
    )
    print("| pHash bits | ΔE | recall | precision | false positives | missed |")
    print("|---|---|---|---|---|---|")
    for limit in BITS:
        for delta_e in DELTA_E:
            tp = fp = fn = 0
            for copy, row in results:
                hits = {pid for pid, best in row.items() if best.get(limit, 99.0) <= delta_e}
                if copy.positive:
                    own = copy.original in hits
                    tp, fn = tp + own, fn + (not own)
                    fp += bool(hits) and not own
                else:
                    fp += bool(hits)
            print(
                f"| {limit} | {delta_e} | {tp / (tp + fn):.3f} | {tp / max(tp + fp, 1):.4f} "
                f"| {fp} | {fn} |"
            )


if __name__ == "__main__":
    main()
