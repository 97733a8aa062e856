"""``python -m dresscode.local.golden_tool generate | check | add``: make and check the golden set.

A developer tool, beside the project's other local tools: it draws the synthetic golden photos
with :mod:`dresscode.local.samples` (so the registry stage, which only loads and scores the
set, never imports the drawing code) and writes them with the loader's format. ``check``
validates every label file and photo hash; ``add`` appends one real labelled photo.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dresscode.registry.golden import (
    GOLDEN_DIR,
    LABELS_FILE,
    SYNTH_COUNT,
    SYNTH_LONG_EDGE,
    SYNTH_PREFIX,
    SYNTH_QUALITY,
    GoldenError,
    GoldenPhoto,
    add_photo,
    load_wardrobe_golden,
    tags_for,
)

log = logging.getLogger(__name__)

_SEED_BASE = 70_000  # away from the seeds `dresscode seed` and the tests use


@dataclass(frozen=True)
class _Spec:
    id: str
    seed: int
    n_items: int
    dark: bool
    portrait: bool


def synthetic_plan(count: int = SYNTH_COUNT) -> list[_Spec]:
    """What to draw: mostly 2-4 items, every 5th photo dark, every 3rd portrait.

    Item counts cycle 1, 2, 3, 4, 4, 3, 2, 3 so cluttered (4-item) photos are a quarter of
    the set and single items an eighth.
    """
    counts = (1, 2, 3, 4, 4, 3, 2, 3)
    return [
        _Spec(
            id=f"{SYNTH_PREFIX}{i + 1:04d}",
            seed=_SEED_BASE + i,
            n_items=counts[i % len(counts)],
            dark=i % 5 == 4,
            portrait=i % 3 == 2,
        )
        for i in range(count)
    ]


def _render(spec: _Spec) -> tuple[bytes, list[dict[str, Any]]]:
    from dresscode.ingest import photos as images
    from dresscode.local import samples

    long, short = SYNTH_LONG_EDGE, SYNTH_LONG_EDGE * 3 // 4
    size = (short, long) if spec.portrait else (long, short)
    img, labels = samples.wardrobe_photo(spec.seed, size=size, n_items=spec.n_items, dark=spec.dark)
    png = io.BytesIO()
    img.save(png, "PNG", compress_level=1)  # lossless hand-over; normalize makes the JPEG
    clean = images.normalize(png.getvalue(), long_edge=SYNTH_LONG_EDGE, quality=SYNTH_QUALITY)
    return clean.jpeg, [item.to_json() for item in labels]


def generate(out_dir: Path = GOLDEN_DIR, count: int = SYNTH_COUNT) -> list[GoldenPhoto]:
    """(Re)write the synthetic photos and ``labels.jsonl``; same bytes on every run.

    Only ``photos/synth-*.jpg`` and ``labels.jsonl`` are written; stale synthetic photos beyond
    ``count`` are removed; ``labels-*.jsonl`` and other photos (real ones) are left alone.
    """
    from dresscode.local.samples import CATEGORIES

    out_dir = Path(out_dir)
    photos_dir = out_dir / "photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    golden: list[GoldenPhoto] = []
    for spec in synthetic_plan(count):
        jpeg, items = _render(spec)
        file = f"photos/{spec.id}.jpg"
        (out_dir / file).write_bytes(jpeg)
        golden.append(
            GoldenPhoto(
                id=spec.id,
                file=file,
                image_sha256=hashlib.sha256(jpeg).hexdigest(),
                items=items,
                tags=tags_for(items, dark=spec.dark),
                root=out_dir,
            )
        )
    wanted = {Path(p.file).name for p in golden}
    for stale in photos_dir.glob(f"{SYNTH_PREFIX}*.jpg"):
        if stale.name not in wanted:
            stale.unlink()
    lines = [
        json.dumps(
            {
                "id": p.id,
                "file": p.file,
                "image_sha256": p.image_sha256,
                "items": p.items,
                "tags": p.tags,
            }
        )
        for p in golden
    ]
    (out_dir / LABELS_FILE).write_text("".join(line + "\n" for line in lines))
    covered = {item["category"] for p in golden for item in p.items}
    if count >= len(CATEGORIES) * 2 and covered != set(CATEGORIES):
        raise GoldenError(f"the synthetic set misses categories {set(CATEGORIES) - covered}")
    return golden


# --------------------------------------------------------------------------------------------
# CLI: python -m dresscode.local.golden_tool generate | check | add
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dresscode.local.golden_tool", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="(re)write the synthetic photos and labels.jsonl")
    gen.add_argument("--out", type=Path, default=GOLDEN_DIR)
    gen.add_argument("--count", type=int, default=SYNTH_COUNT)
    check = sub.add_parser("check", help="validate every label file and photo hash")
    check.add_argument("--path", type=Path, default=GOLDEN_DIR)
    add = sub.add_parser("add", help="add one real labelled photo (normalized on the way in)")
    add.add_argument("photo", type=Path)
    add.add_argument("--items", type=Path, required=True, help='JSON file: [{...}] or {"items"}')
    add.add_argument("--set", dest="set_name", default="real")
    add.add_argument("--id", dest="photo_id")
    add.add_argument("--tag", dest="tags", action="append", default=[])
    add.add_argument("--out", type=Path, default=GOLDEN_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "generate":
            golden = generate(args.out, args.count)
            size = sum(p.path.stat().st_size for p in golden)
            log.info("wrote %d photos (%.1f MB) to %s", len(golden), size / 1e6, args.out)
        elif args.command == "check":
            golden = load_wardrobe_golden(args.path)
            n_items = sum(len(p.items) for p in golden)
            log.info("%s: %d photos, %d items, all valid", args.path, len(golden), n_items)
        else:
            raw = json.loads(args.items.read_text())
            items = raw["items"] if isinstance(raw, dict) else raw
            photo = add_photo(
                args.photo,
                items,
                out_dir=args.out,
                set_name=args.set_name,
                photo_id=args.photo_id,
                tags=args.tags,
            )
            log.info("added %s as %s (%d items)", args.photo, photo.file, len(items))
    except GoldenError as err:
        log.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
