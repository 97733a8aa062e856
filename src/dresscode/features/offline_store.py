"""Feast's file offline store, reading the lake's Delta tables through their log.

The feature views' sources are ``FileSource(file_format=DeltaFormat())`` over the lake's
``user_style`` and ``weather`` Delta tables. Feast 0.67 has two local offline stores, and
neither reads such a source correctly here:

* the ``file`` (Dask) store ignores the format and ``dd.read_parquet``\\ s the folder: every
  Parquet file under it, including the ones a replaced part or a compaction removed from the
  table but ``lake_maintenance`` has not vacuumed yet — rows twice, or rows no longer there;
* the ``duckdb`` store (``feast[duckdb]``, ibis) reads Delta with DuckDB's ``delta``
  extension, which DuckDB downloads from extensions.duckdb.org on first use: without that
  network (CI here, a locked-down worker) the read fails.

So this store is Feast's own Dask store — its point-in-time join, TTL, created-timestamp
tie-break, all unchanged — with one difference: a Delta source is read as the files of the
table's current version (delta-rs ``to_pyarrow_dataset``: the log says which files are live;
a file written before a column existed reads it as null), through the lake's storage options
(S3: the ``aws_default`` connection, like every other read of the lake). Parquet sources are
read as before.

The Dask store reads a source in one module-level function, ``_read_datasource``; there is no
hook to pass another reader in, so importing this module (Feast does, when the yaml names
this store) puts :func:`read_source` in its place. It delegates every non-Delta source to
Feast's function, so nothing else changes. tests/integration/test_feast.py runs the
point-in-time join on Delta tables with replaced parts: a Feast upgrade that renames the
function fails there, loudly.

Configure it in ``feature_store.yaml``::

    offline_store:
      type: dresscode.features.offline_store.DeltaFileOfflineStore
"""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd
import pandas as pd
from feast.data_format import DeltaFormat
from feast.infra.offline_stores import dask as feast_dask
from feast.infra.offline_stores.dask import DaskOfflineStore, DaskOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource
from pydantic import StrictStr

from dresscode.core import delta
from dresscode.core.config import get_settings

STORE_TYPE = "dresscode.features.offline_store.DeltaFileOfflineStore"


class DeltaFileOfflineStoreConfig(DaskOfflineStoreConfig):
    """``offline_store: {type: dresscode.features.offline_store.DeltaFileOfflineStore}``."""

    type: StrictStr = STORE_TYPE  # type: ignore[assignment]


class DeltaFileOfflineStore(DaskOfflineStore):
    """Feast's file (Dask) offline store; Delta sources are read through their log."""


def read_delta(uri: str) -> dd.DataFrame:
    """The live rows of the Delta table at ``uri``, one Dask partition per data file."""
    table = delta.open_uri(uri, get_settings())
    if table is None:
        raise FileNotFoundError(
            f"Feast source {uri} is not a Delta table yet: nothing was written to it"
        )
    dataset = table.to_pyarrow_dataset()
    schema = dataset.schema
    # The part bookkeeping column is the lake's, not a feature: Feast never sees it.
    columns = [name for name in schema.names if name != delta.PART]
    meta = schema.empty_table().select(columns).to_pandas()
    fragments = list(dataset.get_fragments())
    if not fragments:
        return dd.from_pandas(meta, npartitions=1)

    def read_file(fragment: Any) -> pd.DataFrame:
        # The table's schema, not the file's: a column added later reads as null here.
        return fragment.to_table(schema=schema, columns=columns).to_pandas()

    return dd.from_map(read_file, fragments, meta=meta, enforce_metadata=False)


_read_parquet_source = feast_dask._read_datasource


def read_source(data_source: FileSource, repo_path: Any) -> dd.DataFrame:
    """What the Dask store reads for ``data_source``: a Delta table through its log."""
    if isinstance(data_source.file_format, DeltaFormat):
        uri = FileSource.get_uri_for_file_path(repo_path=repo_path, uri=data_source.path)
        return read_delta(uri)
    return _read_parquet_source(data_source, repo_path)


feast_dask._read_datasource = read_source
