"""The wardrobe golden set: labelled photos the digitizer is evaluated on before promotion.

``include/golden/wardrobe/`` holds normalized JPEGs (their sha256 is exactly what is sent to
the model) and ``labels.jsonl``, one photo per line::

    {"id": "synth-0001", "file": "photos/synth-0001.jpg", "image_sha256": "...",
     "items": [{...wardrobe-digitizer item...}], "tags": ["multi", "dark", ...]}

Golden candidates (photos whose labels users corrected, staged by ``feedback_ingest``) join the
set through :func:`accept_candidates` (``dresscode golden accept``) after a human review.

The synthetic part is made by ``python -m dresscode.local.golden_tool generate`` (a developer
tool; deterministic: same bytes every run). Real labelled photos go in ``labels-<name>.jsonl`` files next to it (``add``
appends to one), so regenerating never touches them. Every label item is validated against the
digitizer's output schema, so a label outside the closed vocabularies cannot slip in.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dresscode.core import lake, tables
from dresscode.core.config import REPO_ROOT, Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

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
    from dresscode.llm.parsing import StrictValidator

    path = Path(path)
    files = label_files(path)
    if not files:
        raise GoldenError(f"{path}: no {LABELS_FILE} or {EXTRA_LABELS_GLOB} found")
    validator = StrictValidator(schema or _output_schema())
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
# Tags
# --------------------------------------------------------------------------------------------


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
    from dresscode.ingest import photos as images
    from dresscode.llm.parsing import StrictValidator

    schema = _output_schema()
    validator = StrictValidator(schema)
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
    from PIL import Image

    from dresscode.llm.parsing import StrictValidator

    out_dir = Path(out_dir)
    sha = hashlib.sha256(jpeg).hexdigest()
    photo_id = photo_id or f"{set_name}-{sha[:12]}"
    validator = StrictValidator(_output_schema())
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
# Accepting golden candidates (``dresscode golden accept``): feedback stages, a human accepts
# --------------------------------------------------------------------------------------------

PENDING, ACCEPTED = "pending", "accepted"  # golden_candidates.status


class CandidateError(GoldenError):
    """A candidate that cannot be accepted (unknown, ambiguous prefix, photo missing)."""


@dataclass
class AcceptResult:
    accepted: list[str] = field(default_factory=list)
    """Golden ids written by this call."""
    already: list[str] = field(default_factory=list)
    """Photo hashes that were accepted before (no-op)."""
    golden_dir: str = ""


def latest_candidates(settings: Settings | None = None) -> pd.DataFrame:
    """One row per photo: its highest revision (clocks of the CLI and the workers may differ,
    so the order is a counter, not a timestamp; accepted beats pending at a tie)."""
    frame = lake.read_table(tables.GOLDEN_CANDIDATES.name, settings or get_settings())
    if frame.empty:
        return frame
    frame = frame.assign(_rank=(frame["status"] == ACCEPTED).astype(int))
    order = [*tables.GOLDEN_CANDIDATES.latest_by, "_rank"]
    latest = frame.sort_values(order, kind="stable").drop_duplicates(
        list(tables.GOLDEN_CANDIDATES.key), keep="last"
    )
    return latest.drop(columns="_rank")


def _pick(
    candidates: pd.DataFrame, wanted: Sequence[str], all_pending: bool
) -> list[dict[str, Any]]:
    """The candidate rows named by full hash or unique prefix (or every pending one)."""
    rows = candidates.to_dict("records") if not candidates.empty else []
    if all_pending:
        return [r for r in rows if r["status"] == PENDING]
    picked: list[dict[str, Any]] = []
    unknown, ambiguous = [], []
    for want in wanted:
        want = want.strip().lower()
        matches = [r for r in rows if r["image_sha256"] == want] or (
            [r for r in rows if r["image_sha256"].startswith(want)] if len(want) >= 8 else []
        )
        if not matches:
            unknown.append(want)
        elif len(matches) > 1:
            ambiguous.append(want)
        elif matches[0] not in picked:
            picked.append(matches[0])
    if unknown or ambiguous:
        parts = []
        if unknown:
            parts.append(f"no golden candidate {', '.join(unknown)}")
        if ambiguous:
            parts.append(f"ambiguous prefix {', '.join(ambiguous)} (give more characters)")
        raise CandidateError("; ".join(parts) + f" ({len(rows)} candidates in the lake)")
    return picked


def accept_candidates(
    shas: Sequence[str] = (),
    *,
    all_pending: bool = False,
    golden_dir: Path | None = None,
    set_name: str = "feedback",
    now: datetime | None = None,
    settings: Settings | None = None,
) -> AcceptResult:
    """Copy candidates into the golden set (photo + label line), then mark them accepted.

    The golden files are written first, so a crash in between is healed by accepting again;
    accepting an already-accepted candidate is a no-op.
    """
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    at = now.astimezone(UTC).isoformat(timespec="milliseconds")  # the feedback tables' format
    golden_dir = Path(golden_dir or GOLDEN_DIR)
    result = AcceptResult(golden_dir=str(golden_dir))
    rows = []
    for cand in _pick(latest_candidates(settings), shas, all_pending):
        sha = cand["image_sha256"]
        if cand["status"] == ACCEPTED:
            result.already.append(sha)
            continue
        path = tables.image_path(sha, settings)
        if not lake.exists(path):
            raise CandidateError(f"photo {sha} of the candidate is missing from {path}")
        photo = accept_photo(
            lake.read_bytes(path),
            json.loads(cand["items_json"]),
            out_dir=golden_dir,
            set_name=set_name,
            photo_id=f"{set_name}-{sha[:12]}",
            tags=["feedback"],
        )
        rows.append(
            {k: v for k, v in cand.items() if k != "date"}
            | {
                "status": ACCEPTED,
                "revision": int(cand["revision"]) + 1,
                "updated_at": at,
                "accepted_at": at,
                "golden_id": photo.id,
                "golden_file": str(photo.path),
            }
        )
        result.accepted.append(photo.id)
    if rows:
        keys = sorted(f"{r['labels_digest']}:{r['revision']}" for r in rows)
        part = "accepted-" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        lake.write_parquet(
            tables.GOLDEN_CANDIDATES.name, now.date().isoformat(), part, rows, settings
        )
    log.info(
        "accepted %d golden candidates into %s (%d already accepted)",
        len(result.accepted),
        golden_dir,
        len(result.already),
    )
    return result
