"""Leak scanning: secrets, image bytes and locations where they must never be (the repo, logs,
alerts, the lake).

Two kinds of finding. *Secrets*: strings shaped like real credentials (the patterns below),
plus the exact secret values a deployment knows it holds (connection passwords, the JWT
secret) — a log line with either is a leak even when the value has no recognisable shape.
*Image bytes*: a JPEG or PNG signature in a text file, an image ``data:`` URL, or a long
base64 run (a photo sent to the model is a ``data:image/jpeg;base64,...`` URL; a log that
echoes a request body would carry it).

Image bytes are also found *escaped* (``\\xff\\xd8\\xff``, ``\\u00ff…``, ``%FF%D8%FF``,
``&#255;``, a hex dump, Latin-1 read as UTF-8): a report that prints a request body or a
``repr`` of bytes carries the photo as surely as one holding the raw bytes.

``scan_file`` reads bytes, so binary files are scanned for image signatures too; the repo
scan (tests/scenarios/test_secrets_scan.py) skips binaries, the log scan does not.

:func:`scan_lake` covers every lake area that can hold user bytes. *Locations*: a photo with
a GPS position (EXIF GPS IFD or XMP GPS) anywhere but the raw areas (``landing/``, where
uploads wait as sent, and ``quarantine/``, which keeps rejected originals as evidence) is a
leak: ingest strips it, so one under ``images/``, ``feedback/raw/`` or ``reports/`` got there
around it. Text files (reports, archives, cached answers) are scanned like logs; Parquet parts
by their string and binary cells; the raw uploads themselves for secrets only (a photo is
expected to be image bytes).
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from dresscode.core.config import Settings

SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key block": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "Slack webhook URL": re.compile(
        r"hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}"
    ),
    "GitHub token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "password in URL": re.compile(
        r"\b[a-z][a-z0-9+.-]*://(?P<user>[^\s/:@'\"<>{}]+):(?P<password>[^\s/@'\"<>{}]+)@(?P<host>[^\s/:'\"<>]+)"
    ),
}

IMAGE_PATTERNS: dict[str, re.Pattern[bytes]] = {
    "JPEG bytes": re.compile(rb"\xff\xd8\xff[\xc0-\xfe]"),
    "PNG bytes": re.compile(rb"\x89PNG\r\n\x1a\n"),
    "image data URL": re.compile(rb"data:image/[a-z0-9.+-]+;base64,"),
    # JPEG (/9j/), PNG (iVBORw0KGgo) and RIFF/WebP (UklGR) files in base64.
    "base64 image": re.compile(rb"(?<![A-Za-z0-9+/])(?:/9j/|iVBORw0KGgo|UklGR)[A-Za-z0-9+/]{60}"),
    # 1 kB of base64 without a break is a payload, not a token or a hash.
    "long base64 run": re.compile(rb"[A-Za-z0-9+/]{1024,}={0,2}"),
}

# Image signatures written as text: escapes of the bytes, a hex dump, the bytes read as
# Latin-1 and written as UTF-8, and the JFIF/Exif headers that survive a lossy decode.
ESCAPED_IMAGE_PATTERNS: dict[str, re.Pattern[bytes]] = {
    "escaped image bytes (\\x)": re.compile(
        rb"\\x[fF]{2}\\x[dD]8\\x[fF]{2}|\\x89PNG\\r\\n\\x1[aA]\\n"
    ),
    "escaped image bytes (\\u)": re.compile(
        rb"\\u(?:00|[dD][cC])[fF]{2}\\u(?:00|[dD][cC])[dD]8\\u(?:00|[dD][cC])[fF]{2}"
        rb"|\\u(?:00|[dD][cC])89PNG\\r\\n\\u001[aA]\\n"
    ),
    "escaped image bytes (%)": re.compile(
        rb"%[fF]{2}%[dD]8%[fF]{2}|%89PNG%0[dD]%0[aA]%1[aA]%0[aA]"
    ),
    "escaped image bytes (&#)": re.compile(
        rb"&#(?:255|[xX]0*[fF]{2});&#(?:216|[xX]0*[dD]8);&#(?:255|[xX]0*[fF]{2});"
        rb"|&#(?:137|[xX]0*89);&#(?:80|[xX]0*50);&#(?:78|[xX]0*4[eE]);&#(?:71|[xX]0*47);"
    ),
    "image bytes as hex": re.compile(
        rb"(?i)(?<![0-9a-f])(?:ff[\s:,]?d8[\s:,]?ff|89[\s:,]?50[\s:,]?4e[\s:,]?47)"
        rb"(?:[\s:,]?[0-9a-f]{2}){12}"
    ),
    "image bytes as Latin-1 text": re.compile(rb"\xc3\xbf\xc3\x98\xc3\xbf|\xc2\x89PNG\r\n"),
    "image header as text": re.compile(
        rb"JFIF(?:\x00|\\x00|\\u0000|%00)|Exif(?:\x00|\\x00|\\u0000|%00){2}"
    ),
}

# A base64 font in a data URL (Evidently's report embeds its icon font): not a payload.
_FONT_DATA_URL = re.compile(
    rb"data:(?:font/[a-z0-9.+-]+|application/(?:x-)?font[a-z0-9.+-]*);base64,$"
)
_FONT_SIGNATURES = (b"wOF2", b"wOFF", b"OTTO", b"\x00\x01\x00\x00", b"true")

# Real secrets are longer than this; shorter "known values" (a demo password like ``admin``)
# would match ordinary words and are left to the pattern scan.
MIN_KNOWN_SECRET_LEN = 8


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def scan_text_for_secrets(
    text: str,
    known: Mapping[str, str] | None = None,
    allowed_url_credentials: Iterable[tuple[str, str, str]] = (),
) -> list[tuple[int, str]]:
    """(line number, what) for each secret-shaped string or known secret value in ``text``.

    ``known`` maps a secret value to its name (the name is reported, never the value).
    """
    allowed = set(allowed_url_credentials)
    values = {v: name for v, name in (known or {}).items() if len(v) >= MIN_KNOWN_SECRET_LEN}
    found = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for what, pattern in SECRET_PATTERNS.items():
            for match in pattern.finditer(line):
                if what == "password in URL" and _credential_allowed(match, allowed):
                    continue
                found.append((lineno, what))
        found.extend((lineno, f"known secret: {name}") for v, name in values.items() if v in line)
    return found


def _credential_allowed(match: re.Match[str], allowed: set[tuple[str, str, str]]) -> bool:
    user, password, host = match["user"], match["password"], match["host"]
    # A wildcard host ("*") allows a documented placeholder anywhere.
    return (user, password, host) in allowed or (user, password, "*") in allowed


def scan_bytes_for_images(data: bytes, *, escaped: bool = True) -> list[tuple[int, str]]:
    """(line number, what) for every image signature or base64 payload in ``data``, and
    (``escaped``) every escaped form of one (:data:`ESCAPED_IMAGE_PATTERNS`)."""
    patterns = IMAGE_PATTERNS | (ESCAPED_IMAGE_PATTERNS if escaped else {})
    found = []
    for what, pattern in patterns.items():
        for match in pattern.finditer(data):
            if what == "long base64 run" and _is_font(data, match):
                continue
            found.append((data.count(b"\n", 0, match.start()) + 1, what))
    return sorted(set(found))


def _is_font(data: bytes, match: re.Match[bytes]) -> bool:
    """A base64 run that is a font in a ``data:font/…;base64,`` URL, by its own signature."""
    if not _FONT_DATA_URL.search(data, max(0, match.start() - 64), match.start()):
        return False
    try:
        head = base64.b64decode(match.group()[:8])
    except ValueError:
        return False
    return head.startswith(_FONT_SIGNATURES)


def scan_file(path: Path, known: Mapping[str, str] | None = None) -> list[Finding]:
    """Secrets and image bytes in one file (logs, alerts: any file, text or not)."""
    data = path.read_bytes()
    hits = scan_text_for_secrets(data.decode("utf-8", "replace"), known)
    hits += scan_bytes_for_images(data)
    return [Finding(path, line, what) for line, what in sorted(set(hits))]


def scan_tree(
    roots: Iterable[Path], known: Mapping[str, str] | None = None
) -> tuple[int, list[Finding]]:
    """(files scanned, findings) over every file under ``roots`` (missing roots are skipped)."""
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files.extend(sorted(p for p in root.rglob("*") if p.is_file()))
    return len(files), [hit for path in files for hit in scan_file(path, known)]


def connection_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """Secret values held in ``AIRFLOW_CONN_*`` variables (JSON or URI form), by name.

    The password of each connection, and any extra whose key says it is a secret.
    """
    found: dict[str, str] = {}
    for var, raw in environ.items():
        if not var.startswith("AIRFLOW_CONN_"):
            continue
        conn_id = var.removeprefix("AIRFLOW_CONN_").lower()
        try:
            conn = json.loads(raw)
        except ValueError:
            password = urlsplit(raw).password
            if password:
                found[unquote(password)] = f"{conn_id} password"
            continue
        if not isinstance(conn, dict):
            continue
        if conn.get("password"):
            found[str(conn["password"])] = f"{conn_id} password"
        extra = conn.get("extra") or {}
        if isinstance(extra, dict):
            for key, value in extra.items():
                if re.search(r"secret|token|password|api_key|apikey", key, re.I) and value:
                    found[str(value)] = f"{conn_id} extra {key}"
    return found


# --- the lake ----------------------------------------------------------------------------------

# Areas holding uploads as the user sent them: a GPS position there is expected (landing) or
# kept on purpose (quarantine keeps rejected originals as evidence); image bytes too.
RAW_AREAS = ("landing", "quarantine")
# What a raw area holds beside the uploads: our own reason files, scanned like reports.
_RAW_AREA_TEXT = (".json",)
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")
_XMP_GPS = re.compile(rb"(?:exif:|exifEX:)?GPS(?:Latitude|Longitude)\b")


def is_image(data: bytes) -> bool:
    """A file that *is* a picture (JPEG, PNG, GIF, TIFF, WebP, HEIF/AVIF) by its first bytes."""
    if data.startswith(_IMAGE_MAGIC):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data[4:8] == b"ftyp" and data[8:12] in {b"heic", b"heix", b"mif1", b"msf1", b"avif"}


def gps_in_image(data: bytes) -> list[str]:
    """What locates this picture: a non-empty EXIF GPS IFD, GPS fields in its XMP packet."""
    found = []
    if _XMP_GPS.search(data):
        found.append("GPS position in XMP")
    try:
        from PIL import Image

        if data[4:8] == b"ftyp":
            import pillow_heif

            pillow_heif.register_heif_opener()
        with Image.open(io.BytesIO(data)) as im:
            gps = im.getexif().get_ifd(0x8825)
    except Exception:  # an unreadable picture is still scanned for XMP and secrets
        gps = {}
    if gps:
        found.append("GPS position in EXIF")
    return found


def _area(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).parts[0]
    except (ValueError, IndexError):
        return ""


def scan_lake_file(path: Path, area: str, known: Mapping[str, str] | None = None) -> list[Finding]:
    """The findings of one lake file, by what it is and where it sits (see the module doc)."""
    data = path.read_bytes()
    hits = scan_text_for_secrets(data.decode("utf-8", "replace"), known)
    raw_upload = area in RAW_AREAS and not path.name.endswith(_RAW_AREA_TEXT)
    if raw_upload:
        pass  # a user's upload as sent: only our secrets would be a leak in it
    elif is_image(data):
        hits += [(1, what) for what in gps_in_image(data)]
    elif data.startswith(b"PAR1"):
        hits += _scan_parquet(path, known)
    else:
        hits += scan_bytes_for_images(data)
    return [Finding(path, line, what) for line, what in sorted(set(hits))]


def _scan_parquet(path: Path, known: Mapping[str, str] | None) -> list[tuple[int, str]]:
    """Secrets and image bytes in the text and binary cells of a Parquet part (lists and
    structs included); the line reported is the row, from 1."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        return [(0, f"unreadable Parquet part ({type(exc).__name__})")]
    hits: list[tuple[int, str]] = []
    for column in table.itercolumns():
        if not _may_hold_bytes(column.type):
            continue
        for row, value in enumerate(column.to_pylist(), start=1):
            for raw in _cells(value):
                text = raw.decode("utf-8", "replace")
                hits += [(row, what) for _, what in scan_text_for_secrets(text, known)]
                hits += [(row, what) for _, what in scan_bytes_for_images(raw)]
    return hits


def _may_hold_bytes(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        return True
    if pa.types.is_large_binary(kind) or pa.types.is_dictionary(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _may_hold_bytes(kind.value_type)
    return bool(pa.types.is_struct(kind) or pa.types.is_map(kind))


def _cells(value: Any) -> Iterator[bytes]:
    if isinstance(value, bytes):
        yield value
    elif isinstance(value, str):
        yield value.encode("utf-8", "surrogatepass")
    elif isinstance(value, dict):
        for v in value.values():
            yield from _cells(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _cells(v)


def scan_lake(
    root: Path, known: Mapping[str, str] | None = None, *, landing: Path | None = None
) -> tuple[int, list[Finding]]:
    """(files scanned, findings) over every file of the lake under ``root`` and of the landing
    area (``landing``, when it is not inside the lake). Missing folders are skipped."""
    areas: list[tuple[Path, str | None]] = [(root, None)]
    if landing is not None and not landing.is_relative_to(root):
        areas.append((landing, "landing"))
    scanned, findings = 0, []
    for top, fixed in areas:
        if not top.is_dir():
            continue
        for path in sorted(p for p in top.rglob("*") if p.is_file()):
            scanned += 1
            findings += scan_lake_file(path, fixed or _area(path, top), known)
    return scanned, findings


def scan_stack(
    env: Mapping[str, str], logs: Path, settings: Settings, *, tracking_uri: str | None = None
) -> tuple[int, list[Finding]]:
    """(files, findings): a local stack's logs, alerts and lake scanned for its secrets, image
    bytes and locations.

    Known values are the connections' passwords (the simulator's API key) and Airflow's JWT
    secret (from the stack's environment ``env``); the patterns catch credential shapes and
    photos (raw, base64, data URLs, escaped). The lake is every area that can hold user bytes
    (landing, quarantine, images, feedback archives, reports, cached answers, the tables): see
    :func:`scan_lake`. A lake or landing area on S3 is not scanned here (only local folders).
    The MLflow traces (:func:`scan_traces`) of ``tracking_uri`` (default: the settings') too.
    """
    known = connection_secrets(env)
    known[env["AIRFLOW__API_AUTH__JWT_SECRET"]] = "Airflow JWT secret"
    scanned, found = scan_tree([logs, settings.alerts_file], known)

    def local(uri: str | None) -> Path | None:
        parts = urlsplit(uri or "")
        return Path(unquote(parts.path)) if parts.scheme == "file" else None

    lake_root = local(settings.lake_uri)
    if lake_root is not None:
        in_lake, lake_found = scan_lake(lake_root, known, landing=local(settings.landing_uri))
        scanned, found = scanned + in_lake, found + lake_found
    traces, traces_found = scan_traces(tracking_uri or settings.mlflow_tracking_uri, known)
    return scanned + traces, found + traces_found


def scan_traces(
    tracking_uri: str,
    known: Mapping[str, str] | None = None,
    *,
    experiment: str = "dresscode-traces",
) -> tuple[int, list[Finding]]:
    """(traces scanned, findings): every trace of the ``dresscode-traces`` experiment, its
    spans' names, attributes, inputs and outputs as JSON, scanned for secrets and image
    bytes. A finding's path is ``mlflow-trace:<trace id>``; no experiment, nothing to scan."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return 0, []
    traces = client.search_traces(locations=[found.experiment_id], max_results=10_000)
    findings = []
    for trace in traces:
        text = trace.to_json(pretty=True)
        where = Path(f"mlflow-trace:{trace.info.trace_id}")
        hits = scan_text_for_secrets(text, known) + scan_bytes_for_images(text.encode())
        findings += [Finding(where, line, what) for line, what in hits]
    return len(traces), findings
