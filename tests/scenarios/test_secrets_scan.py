"""No secret in the repository: scan every file git tracks (or would add) for credentials.

Secrets live in Airflow connections (``AIRFLOW_CONN_*``), the environment and ``.env`` (git
ignores it), never in the tree. The patterns are the shapes real credentials have, so
documentation placeholders (``T000/B000/XXXX``) do not match; the only passwords in URLs the
repo may hold are the local-only ones in ``ALLOWED_URL_CREDENTIALS``, each with its reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dresscode.local import leaks

REPO = Path(__file__).resolve().parents[2]

# (user, password, host) of URL credentials that are documented local-only values.
ALLOWED_URL_CREDENTIALS: dict[tuple[str, str, str], str] = {
    ("airflow", "airflow", "postgres"): (
        "the docker-compose Postgres of the full local stack (feature_repo/"
        "feature_store.fullstack.yaml example): a container-network host, not reachable from "
        "outside; production sets DRESSCODE_FEAST_REGISTRY_URL from a secret"
    ),
}

# (user, password) placeholders documentation shows in example URLs, on any host.
PLACEHOLDER_CREDENTIALS: dict[tuple[str, str], str] = {
    ("user", "pass"): "README.md and feature_repo/README.md show the registry URL's shape",
}

BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".heic", ".gif", ".parquet", ".ico"}


def repo_files() -> list[Path]:
    """Tracked files plus untracked ones git would add (they are one ``git add`` away)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    paths = {REPO / name for name in out.split("\0") if name}
    return sorted(p for p in paths if p.is_file())  # a deleted tracked file is not content


def scan_text(text: str) -> list[tuple[int, str]]:
    """(line number, what) for every secret-shaped string in ``text``."""
    allowed = [*ALLOWED_URL_CREDENTIALS, *((u, p, "*") for u, p in PLACEHOLDER_CREDENTIALS)]
    return leaks.scan_text_for_secrets(text, allowed_url_credentials=allowed)


def scan_file(path: Path) -> list[str]:
    """``file:line: what`` for every finding in one file (binary files are skipped)."""
    if path.suffix.lower() in BINARY_SUFFIXES:
        return []
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return []
    rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return [f"{rel}:{n}: {what}" for n, what in scan_text(data.decode("utf-8", "replace"))]


def test_no_file_in_the_repository_holds_a_secret() -> None:
    files = repo_files()
    assert len(files) > 50  # the scan really saw the tree
    findings = [hit for path in files for hit in scan_file(path)]
    assert findings == [], "secrets in the repository:\n" + "\n".join(findings)


def test_dot_env_is_ignored_and_not_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--", ".env", "**/.env"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert tracked == []
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, check=False)
    assert ignored.returncode == 0, ".env must be in .gitignore"


# Assembled at run time so this file itself holds no secret-shaped string.
PLANTED = {
    "AWS access key id": "AKIA" + "Q7XW3ZJ5KD2MNB4R",
    "private key block": "-----BEGIN " + "RSA PRIVATE KEY-----",
    "Slack webhook URL": "https://hooks.slack.com/services/"
    + "T0A1B2C3D/B9Z8Y7X6W/"
    + "aB3dE5gH7jK9mN1pQ3sT5vW7",
    "GitHub token": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "Hugging Face token": "hf_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567",
    "password in URL": "postgresql://admin:" + "s3cr3t@db.example.com:5432/app",
}


@pytest.mark.parametrize("what", sorted(PLANTED))
def test_a_planted_secret_is_caught_with_its_file_and_line(tmp_path: Path, what: str) -> None:
    planted = tmp_path / "settings.py"
    planted.write_text(f"# config\nVALUE = 1\nTOKEN = '{PLANTED[what]}'\n")
    assert scan_file(planted) == [f"{planted}:3: {what}"]


def test_documentation_placeholders_and_allowed_local_urls_are_not_findings() -> None:
    text = (
        "https://hooks.slack.com/services/T000/B000/XXXX\n"
        "postgresql+psycopg://airflow:airflow@postgres:5432/feast\n"
        "https://user@example.com/no-password\n"
        "postgresql+psycopg://user:pass@host:5432/feast\n"
    )
    assert scan_text(text) == []


def test_an_allowed_credential_on_another_host_is_still_a_finding() -> None:
    # Built at run time: this file must pass its own scan.
    url = "postgresql://airflow:" + "airflow@prod-db.internal/feast"
    assert scan_text(url) == [(1, "password in URL")]
