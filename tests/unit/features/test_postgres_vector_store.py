"""dresscode.features.postgres_vector_store's config: a URL (the Feast registry's) stands for the
connection fields; the store itself is tested against PostgreSQL in tests/integration/test_feast.py."""

from __future__ import annotations

import pytest

from dresscode.features.postgres_vector_store import VectorPostgreSQLOnlineStoreConfig


def test_the_url_gives_the_connection_fields_and_fields_given_win() -> None:
    config = VectorPostgreSQLOnlineStoreConfig(
        url="postgresql+psycopg://user:pass@postgres:5433/my%20feast", sslmode="prefer"
    )
    assert (config.host, config.port, config.database) == ("postgres", 5433, "my feast")
    assert (config.user, config.password) == ("user", "pass")
    trusted = VectorPostgreSQLOnlineStoreConfig(
        url="postgresql://postgres@127.0.0.1/test", database="other"
    )
    assert (trusted.port, trusted.password, trusted.database) == (5432, "", "other")
    with pytest.raises(ValueError, match="url: postgresql://"):
        VectorPostgreSQLOnlineStoreConfig(url="redis://127.0.0.1:6379")
