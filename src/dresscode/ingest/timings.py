"""Where one ingest batch's time goes, carried in its result for the run's phase breakdown.

A load run (``bench/load_stack.py``) lines these up with the task instances' own times
(scheduled, queued, started, ended) to say where the model endpoint waits: task start-up
before ``started_at``, the batch's setup, normalization, the model calls, the commit, and the
gaps between one batch's last answer and the next batch's first request. Wall-clock instants
are epoch seconds (``time.time()``) so they compare across processes and workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypedDict, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class BatchTimings(TypedDict):
    started_at: float  # the task's code began (the task process's start-up is before it)
    setup_s: float  # manifest state, earlier photos' fingerprints: before the first photo
    normalize_cpu_s: float  # thread CPU time decoding, validating, downscaling, stripping
    model_first_at: float | None  # the batch's first model request went out (None: no call)
    model_last_at: float | None  # its last model answer came back
    model_call_s: float  # its model calls' time on the client, the endpoint's queue included
    commit_s: float  # manifest, items and answers written to the lake
    ended_at: float


class BatchClock:
    """Collects a batch's :class:`BatchTimings`; safe to call from the normalizing threads."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._normalize_cpu_s = 0.0
        self._model_call_s = 0.0
        self._model_first_at: float | None = None
        self._model_last_at: float | None = None
        self._marks: dict[str, float] = {}

    def mark(self, phase: str, seconds: float) -> None:
        self._marks[phase] = self._marks.get(phase, 0.0) + seconds

    def cpu(self, work: Callable[P, R]) -> Callable[P, R]:
        """``work`` with its thread CPU time added to normalization (runs in a pool thread)."""

        def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            began = time.thread_time()
            try:
                return work(*args, **kwargs)
            finally:
                spent = time.thread_time() - began
                with self._lock:
                    self._normalize_cpu_s += spent

        return timed

    def model_call(self, began: float, ended: float) -> None:
        """One model call's epoch start and end (event-loop thread)."""
        self._model_call_s += ended - began
        first, last = self._model_first_at, self._model_last_at
        self._model_first_at = began if first is None else min(first, began)
        self._model_last_at = ended if last is None else max(last, ended)

    def timings(self) -> BatchTimings:
        return BatchTimings(
            started_at=round(self.started_at, 3),
            setup_s=round(self._marks.get("setup", 0.0), 3),
            normalize_cpu_s=round(self._normalize_cpu_s, 3),
            model_first_at=None if self._model_first_at is None else round(self._model_first_at, 3),
            model_last_at=None if self._model_last_at is None else round(self._model_last_at, 3),
            model_call_s=round(self._model_call_s, 3),
            commit_s=round(self._marks.get("commit", 0.0), 3),
            ended_at=round(time.time(), 3),
        )
