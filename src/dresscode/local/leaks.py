"""Leak scanning: secrets and image bytes where they must never be (the repo, logs, alerts).

Two kinds of finding. *Secrets*: strings shaped like real credentials (the patterns below),
plus the exact secret values a deployment knows it holds (connection passwords, the JWT
secret) — a log line with either is a leak even when the value has no recognisable shape.
*Image bytes*: a JPEG or PNG signature in a text file, an image ``data:`` URL, or a long
base64 run (a photo sent to the model is a ``data:image/jpeg;base64,...`` URL; a log that
echoes a request body would carry it).

``scan_file`` reads bytes, so binary files are scanned for image signatures too; the repo
scan (tests/scenarios/test_secrets_scan.py) skips binaries, the log scan does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


def scan_bytes_for_images(data: bytes) -> list[tuple[int, str]]:
    """(line number, what) for every image signature or base64 payload in ``data``."""
    found = []
    for what, pattern in IMAGE_PATTERNS.items():
        for match in pattern.finditer(data):
            found.append((data.count(b"\n", 0, match.start()) + 1, what))
    return sorted(set(found))


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
