"""Settle a serving process's memory before it serves: no long garbage-collector pauses.

CPython's full collection (its oldest generation) walks every container object the process
holds. The service's request path imports pandas, pyarrow, deltalake, the OpenAI SDK and
Airflow's object storage lazily, so the first requests left ~250k long-lived objects (modules,
functions, types) in that generation, and under 200 concurrent streams each full collection
paused the whole process, every stream with it, for 55-185 ms, several times a minute
(measured with ``gc.callbacks`` in ``bench/serve.py``; docs/benchmarks.md).
:func:`import_and_freeze` makes those imports at start and moves everything alive then into
the collector's permanent generation (``gc.freeze``, as the CPython docs suggest for
long-running servers), which collections skip: they walk only what requests allocate.

The first write to the lake (the request log's first flush) also imported the object storage's
filesystems (Airflow registers every provider's, the amazon provider's s3fs among them): ~0.1 s
of CPU idle, ~0.6 s under load, with the GIL held and every stream waiting (py-spy, 200
streams). Given the settings, :func:`import_and_freeze` opens the lake's storage first.

Frozen objects are still freed by reference counting; only a reference cycle among them would
never be collected, and a collection runs first so there is none from start-up.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from dresscode.core.config import Settings

log = logging.getLogger(__name__)

# What the serving and reader processes import on a request's path (lazily, for a fast CLI).
REQUEST_PATH_IMPORTS = (
    "pandas",
    "pyarrow.dataset",
    "deltalake",
    "airflow.sdk",
    "openai",
    "aiohttp",  # the SDK's transport when installed (llm.client)
    "jsonschema",
    "dresscode.core.lake",
    "dresscode.core.delta",
    "dresscode.core.delta_kept",
    "dresscode.core.tables",
    "dresscode.features.weather",
    "dresscode.llm.ask",
    "dresscode.llm.client",
    "dresscode.outfits.stylist",
)


def import_and_freeze(
    process: str = "serving process",
    modules: tuple[str, ...] = REQUEST_PATH_IMPORTS,
    settings: Settings | None = None,
    warm: Callable[[], object] | None = None,
) -> int:
    """Import ``modules`` (those not installed are skipped), open the lake's storage if
    ``settings`` are given, run ``warm`` (what it opens is frozen too; logging is set up by
    then: the imports include Airflow's), collect, freeze: the number of objects the collector
    no longer walks (logged, with the ``process`` it is)."""
    for name in modules:
        if importlib.util.find_spec(name.split(".")[0]) is not None:
            importlib.import_module(name)
    if settings is not None:
        _open_lake_storage(settings)
    if warm is not None:
        warm()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "%s: imports made and %d start-up objects frozen (no full-collection pauses for them)",
        process,
        frozen,
    )
    return frozen


def _open_lake_storage(settings: Settings) -> None:
    from dresscode.core import lake

    try:
        lake.root(settings).fs  # noqa: B018 - the property registers the filesystems
    except Exception as exc:  # the first write will say what is wrong, with its own context
        log.warning(
            "the lake's storage could not be opened at start (%s: %s); its first write will "
            "say why",
            type(exc).__name__,
            str(exc)[:200],
        )
