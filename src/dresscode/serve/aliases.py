"""The stylist's ``production`` and ``candidate`` blueprints, kept fresh while serving.

A background loop re-reads both aliases from the MLflow prompt registry every
``DRESSCODE_SERVE_ALIAS_REFRESH_S`` (``prompt_registry.load`` asks MLflow each time: no alias
cache), so a promotion or a rollback is served within that bound without a restart. Requests
never wait on the registry: each takes the snapshot current when it starts and keeps it to the
end, so a stream begun before a promotion finishes on the version it started with.

Decisions:

- Until anything is promoted, production is the newest blueprint in git (as ``outfit_pregen``
  does), with a warning; no candidate alias means no canary and no shadow.
- A registry that cannot be read keeps the last good snapshot (logged); at start-up there is
  none to keep, so the service does not start: never serve an unknown blueprint.
- A candidate equal to production is no candidate (nothing to compare).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from dresscode.llm import blueprints
from dresscode.llm.blueprints import Blueprint

log = logging.getLogger(__name__)

Loader = Callable[[str, str], Blueprint]
"""``(prompt name, alias) -> Blueprint``; raises ``AliasNotSet`` when the alias is not set."""


@dataclass(frozen=True)
class Snapshot:
    """The blueprints one request is served with."""

    production: Blueprint
    candidate: Blueprint | None
    source: str  # "registry", or the git fallback while nothing is promoted
    resolved_at: float  # time.monotonic() of the registry read


def _registry_loader(name: str, alias: str) -> Blueprint:
    from dresscode.registry import prompt_registry

    return prompt_registry.load(name, alias)


def _alias_not_set(exc: Exception) -> bool:
    from dresscode.registry.store import AliasNotSet

    return isinstance(exc, AliasNotSet)


class LivePrompts:
    """The current :class:`Snapshot` of one prompt, refreshed in the background."""

    def __init__(self, name: str, refresh_s: float, load: Loader | None = None) -> None:
        self.name = name
        self.refresh_s = refresh_s
        self._load = load or _registry_loader
        self._snapshot: Snapshot | None = None
        self._loop: asyncio.Task[None] | None = None

    def current(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("LivePrompts.start() was not awaited")
        return self._snapshot

    async def start(self) -> None:
        """Resolve once (failing loudly if the registry cannot be read), then keep refreshing."""
        self._snapshot = await asyncio.to_thread(self._resolve)
        log.info("serving %s (%s)", self.describe(), self._snapshot.source)
        self._loop = asyncio.create_task(self._refresh_forever(), name="alias-refresh")

    async def aclose(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    def describe(self) -> str:
        snap = self.current()
        candidate = snap.candidate.ref if snap.candidate else "no candidate"
        return f"production {snap.production.ref}, {candidate}"

    async def refresh(self) -> None:
        """Re-read both aliases now; on failure keep the last snapshot and say so."""
        before = self.describe()
        try:
            self._snapshot = await asyncio.to_thread(self._resolve)
        except Exception as exc:
            log.warning(
                "could not re-read the %s aliases (%s: %s); still serving %s",
                self.name,
                type(exc).__name__,
                str(exc)[:200],
                before,
            )
            return
        if self.describe() != before:
            log.info("aliases moved: now serving %s (was %s)", self.describe(), before)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()

    def _resolve(self) -> Snapshot:
        source = "registry"
        try:
            production = self._load(self.name, "production")
        except Exception as exc:
            if not _alias_not_set(exc):
                raise
            production, source = blueprints.resolve(self.name), "git (nothing promoted yet)"
        try:
            candidate: Blueprint | None = self._load(self.name, "candidate")
        except Exception as exc:
            if not _alias_not_set(exc):
                raise
            candidate = None
        if candidate is not None and candidate.content_hash() == production.content_hash():
            candidate = None
        return Snapshot(production, candidate, source, time.monotonic())
