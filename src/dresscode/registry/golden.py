"""The wardrobe golden set: labelled photos the digitizer is evaluated on before promotion.

``include/golden/wardrobe/`` holds normalized JPEGs (their sha256 is exactly what is sent to
the model) and ``labels.jsonl``, one photo per line::

    {"id": "synth-0001", "file": "photos/synth-0001.jpg", "image_sha256": "...",
     "items": [{...wardrobe-digitizer item...}], "tags": ["multi", "dark", ...]}

The synthetic part is made by ``python -m dresscode.registry.golden generate`` (deterministic: same
bytes every run). Real labelled photos go in ``labels-<name>.jsonl`` files next to it (``add``
appends to one), so regenerating never touches them. Every label item is validated against the
digitizer's output schema, so a label outside the closed vocabularies cannot slip in.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dresscode.core.config import REPO_ROOT

log = logging.getLogger(__name__)

GOLDEN_DIR = REPO_ROOT / "include" / "golden" / "wardrobe"
LABELS_FILE = "labels.jsonl"
EXTRA_LABELS_GLOB = "labels-*.jsonl"
SCHEMA_REF = "wardrobe-digitizer@1"

# The synthetic set: small photos (the model sees them as sent; no further downscaling).
SYNTH_PREFIX = "synth-"
SYNTH_COUNT = 120
SYNTH_LONG_EDGE = 512
SYNTH_QUALITY = 80
_SEED_BASE = 70_000  # away from the seeds `dresscode seed` and the tests use

_REQUIRED_KEYS = ("id", "file", "image_sha256", "items")


class GoldenError(ValueError):
    """A golden set that must not be used; the message names the file and line."""


@dataclass(frozen=True)
class GoldenPhoto:
    """One labelled photo: the items the digitizer should report for it."""

    id: str
    file: str
    """Path of the JPEG relative to the golden directory."""
    image_sha256: str
    items: list[dict[str, Any]]
    tags: list[str] = field(default_factory=list)
    root: Path = GOLDEN_DIR

    @property
    def path(self) -> Path:
        return self.root / self.file

    def read_jpeg(self) -> bytes:
        return self.path.read_bytes()


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def _output_schema() -> dict[str, Any]:
    from dresscode.llm import blueprints

    return blueprints.resolve(SCHEMA_REF).output_schema


def label_files(path: Path = GOLDEN_DIR) -> list[Path]:
    """``labels.jsonl`` first (if present), then ``labels-*.jsonl`` in name order."""
    main = path / LABELS_FILE
    extra = sorted(path.glob(EXTRA_LABELS_GLOB))
    return ([main] if main.exists() else []) + extra


def load_wardrobe_golden(
    path: Path = GOLDEN_DIR,
    *,
    schema: dict[str, Any] | None = None,
    check_files: bool = True,
) -> list[GoldenPhoto]:
    """Every labelled photo under ``path``, validated. Raises :class:`GoldenError`.

    Each line must be a JSON object with ``id``, ``file``, ``image_sha256`` and ``items``; the
    items must satisfy ``schema`` (default: the digitizer v1 output schema); ids must be
    unique. With ``check_files`` the photo must exist and hash to ``image_sha256``.
    """
    from jsonschema import Draft202012Validator

    path = Path(path)
    files = label_files(path)
    if not files:
        raise GoldenError(f"{path}: no {LABELS_FILE} or {EXTRA_LABELS_GLOB} found")
    validator = Draft202012Validator(schema or _output_schema())
    photos: list[GoldenPhoto] = []
    seen: dict[str, str] = {}
    for labels in files:
        for line_no, line in enumerate(labels.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{labels}:{line_no}"
            photo = _parse_line(line, where, path, validator)
            if photo.id in seen:
                raise GoldenError(f"{where}: duplicate id {photo.id!r} (first at {seen[photo.id]})")
            seen[photo.id] = where
            if check_files:
                _check_file(photo, where)
            photos.append(photo)
    if not photos:
        raise GoldenError(f"{path}: the golden set is empty")
    return photos


def _parse_line(line: str, where: str, root: Path, validator: Any) -> GoldenPhoto:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise GoldenError(f"{where}: not JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise GoldenError(f"{where}: a line must be a JSON object")
    missing = [k for k in _REQUIRED_KEYS if k not in row]
    if missing:
        raise GoldenError(f"{where}: missing {', '.join(missing)}")
    errors = sorted(validator.iter_errors({"items": row["items"]}), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        at = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise GoldenError(f"{where}: {row['id']}: label {at}: {first.message}")
    tags = row.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise GoldenError(f"{where}: tags must be a list of strings")
    return GoldenPhoto(
        id=str(row["id"]),
        file=str(row["file"]),
        image_sha256=str(row["image_sha256"]),
        items=row["items"],
        tags=tags,
        root=root,
    )


def _check_file(photo: GoldenPhoto, where: str) -> None:
    if not photo.path.is_file():
        raise GoldenError(f"{where}: {photo.id}: photo {photo.path} does not exist")
    actual = hashlib.sha256(photo.path.read_bytes()).hexdigest()
    if actual != photo.image_sha256:
        raise GoldenError(
            f"{where}: {photo.id}: {photo.file} hashes to {actual[:12]}..., the label says "
            f"{photo.image_sha256[:12]}... (re-normalize the photo or fix the label)"
        )


def script_lines(golden: Iterable[GoldenPhoto]) -> list[dict[str, Any]]:
    """The simulator's response-script lines that answer every golden photo exactly."""
    return [{"image_sha256": p.image_sha256, "items": p.items} for p in golden]


def write_script(golden: Iterable[GoldenPhoto], path: Path) -> Path:
    """Write :func:`script_lines` as JSONL (for ``python -m dresscode.sim --script``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in script_lines(golden)))
    return path


# --------------------------------------------------------------------------------------------
# The synthetic set
# --------------------------------------------------------------------------------------------


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


def tags_for(items: Sequence[dict[str, Any]], *, dark: bool = False) -> list[str]:
    """Hard-case tags derived from the labels (and the lighting, which labels do not show)."""
    categories = [item["category"] for item in items]
    tags = []
    if dark:
        tags.append("dark")
    if len(items) == 1:
        tags.append("single")
    if len(items) >= 2:
        tags.append("multi")
    if len(items) >= 4:
        tags.append("cluttered")
    if len(set(categories)) < len(categories):
        tags.append("same_category")
    if any(item["pattern"] != "solid" for item in items):
        tags.append("patterned")
    for category in ("accessory", "bag", "footwear", "outerwear", "dress"):
        if category in categories:
            tags.append(category)
    return tags


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


def add_photo(
    source: Path,
    items: list[dict[str, Any]],
    *,
    out_dir: Path = GOLDEN_DIR,
    set_name: str = "real",
    photo_id: str | None = None,
    tags: Sequence[str] = (),
) -> GoldenPhoto:
    """Normalize a real photo as ingest would, store it, append its label line.

    The items are validated first; the line goes to ``labels-<set_name>.jsonl``.
    """
    from jsonschema import Draft202012Validator

    from dresscode.ingest import photos as images

    schema = _output_schema()
    validator = Draft202012Validator(schema)
    line_json = json.dumps({"id": "?", "file": "?", "image_sha256": "?", "items": items})
    _parse_line(line_json, f"{source} (labels)", out_dir, validator)
    long_edge = schema_long_edge()
    clean = images.normalize(source.read_bytes(), filename=source.name, long_edge=long_edge)
    photo_id = photo_id or f"{set_name}-{clean.sha256[:12]}"
    file = f"photos/{set_name}/{photo_id}.jpg"
    (out_dir / file).parent.mkdir(parents=True, exist_ok=True)
    (out_dir / file).write_bytes(clean.jpeg)
    photo = GoldenPhoto(
        photo_id, file, clean.sha256, items, [*tags, *tags_for(items)], root=out_dir
    )
    line = {k: getattr(photo, k) for k in ("id", "file", "image_sha256", "items", "tags")}
    with (out_dir / f"labels-{set_name}.jsonl").open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    return photo


def accept_photo(
    jpeg: bytes,
    items: list[dict[str, Any]],
    *,
    out_dir: Path = GOLDEN_DIR,
    set_name: str = "feedback",
    photo_id: str | None = None,
    tags: Sequence[str] = (),
) -> GoldenPhoto:
    """Store an already-normalized photo and its labels as ``photo_id``; idempotent.

    For photos that went through ingest (``dresscode golden accept``): the bytes are stored as
    they are, because their sha256 is what the digitizer was sent. The label line goes to
    ``labels-<set_name>.jsonl``; accepting the same id again replaces its line (new labels) or
    changes nothing (same labels). A photo already in the set under another id is refused.
    """
    from jsonschema import Draft202012Validator
    from PIL import Image

    out_dir = Path(out_dir)
    sha = hashlib.sha256(jpeg).hexdigest()
    photo_id = photo_id or f"{set_name}-{sha[:12]}"
    validator = Draft202012Validator(_output_schema())
    row = {"id": photo_id, "file": "?", "image_sha256": sha, "items": items}
    _parse_line(json.dumps(row), f"{photo_id} (labels)", out_dir, validator)
    with Image.open(io.BytesIO(jpeg)) as im:
        if im.format != "JPEG" or max(im.size) > schema_long_edge():
            raise GoldenError(
                f"{photo_id}: the photo must be a normalized JPEG with a long edge of at most "
                f"{schema_long_edge()} px (got {im.format} {im.size[0]}x{im.size[1]})"
            )
    labels_path = out_dir / f"labels-{set_name}.jsonl"
    _check_not_elsewhere(out_dir, labels_path, photo_id, sha)
    file = f"photos/{set_name}/{photo_id}.jpg"
    target = out_dir / file
    if not target.is_file() or target.read_bytes() != jpeg:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(jpeg)
    photo = GoldenPhoto(photo_id, file, sha, items, [*tags, *tags_for(items)], root=out_dir)
    line = json.dumps(
        {k: getattr(photo, k) for k in ("id", "file", "image_sha256", "items", "tags")}
    )
    lines = labels_path.read_text().splitlines() if labels_path.exists() else []
    kept = [x for x in lines if x.strip() and json.loads(x).get("id") != photo_id]
    if line not in lines:
        tmp = labels_path.with_name(f".{labels_path.name}.tmp")
        tmp.write_text("".join(x + "\n" for x in [*kept, line]))
        tmp.replace(labels_path)
    return photo


def _check_not_elsewhere(out_dir: Path, own_file: Path, photo_id: str, sha: str) -> None:
    """Refuse a photo (or an id) the golden set already holds in another label line."""
    for labels in label_files(out_dir):
        for line_no, line in enumerate(labels.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            same_id = row.get("id") == photo_id
            if same_id and labels == own_file:
                continue
            if same_id or row.get("image_sha256") == sha:
                raise GoldenError(
                    f"{labels}:{line_no}: photo {sha[:12]}... (id {photo_id}) is already in the "
                    f"golden set as {row.get('id')!r}"
                )


def schema_long_edge() -> int:
    """The long edge photos are sent at (the schema blueprint's ``image_long_edge``)."""
    from dresscode.llm import blueprints

    return blueprints.resolve(SCHEMA_REF).image_long_edge


# --------------------------------------------------------------------------------------------
# CLI: python -m dresscode.registry.golden generate | check | add
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dresscode.registry.golden", description=__doc__
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
