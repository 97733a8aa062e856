"""The live shadow as a promotion gate: what ``dresscode serve`` saw the candidate do.

``dresscode serve`` answers a sampled share of real requests with the ``candidate`` too, in
the background, and writes one ``serve_shadow`` row per request (agreement with what the user
was served, the candidate's tool calls, unowned ids, failures, latency and tokens of both).
:func:`verdict` reads the candidate's rows of the last ``days`` and holds them against the
bounds of ``DRESSCODE_SHADOW_LIVE_GATE``; ``prompt_release`` refuses to promote a candidate
that breaks one, saying which and by how much.

Decisions:

- Fewer rows than ``min_samples`` fail the gate only when ``min_samples`` is above 0 (the
  default is 0: a candidate nobody has shadowed yet is judged by the golden set and the replay
  alone, and the run says so).
- Rates are over the rows that say something: agreement over requests whose user answer
  completed, tool-call success over requests where the candidate called a tool.
- Latency compares the 95th percentiles of the same requests, so load affects both alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dresscode.core import lake, tables
from dresscode.core.config import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveVerdict:
    """The live shadow gate for one candidate; ``passed`` None: no samples, not applied."""

    name: str
    version: int
    samples: int
    passed: bool | None
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        if self.passed is None:
            return f"live shadow: no requests shadowed to {self.name} v{self.version} yet (gate not applied)"
        shown = ", ".join(f"{k} {v:.3g}" for k, v in self.metrics.items())
        state = "passed" if self.passed else "FAILED: " + "; ".join(self.reasons)
        return f"live shadow over {self.samples} requests {state} ({shown})"

    def refusal(self) -> str | None:
        """One sentence: why the candidate must not be promoted (None: it may)."""
        if self.passed is not False:
            return None
        return f"{self.name} v{self.version} is not promoted: {self.summary()}."


def _number(value: object) -> float | None:
    """A finite float, or None for a missing value (None, or NaN read back from Parquet)."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if number != number else number


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def verdict(
    name: str, version: int, settings: Settings | None = None, *, now: datetime | None = None
) -> LiveVerdict:
    """Hold the candidate's ``serve_shadow`` rows of the last ``days`` against the bounds."""
    settings = settings or get_settings()
    bounds = settings.shadow_live_gate
    today = (now or datetime.now(UTC)).date()
    days = [today - timedelta(days=n) for n in range(int(bounds["days"]) + 1)]
    rows = lake.read_table(
        tables.SERVE_SHADOW.name,
        settings,
        days=days,
        filters=[("prompt_name", "==", name), ("candidate_version", "==", int(version))],
    )
    n = len(rows)
    minimum = int(bounds["min_samples"])
    if n == 0 and minimum == 0:
        return LiveVerdict(name, version, 0, None)
    if n < minimum:
        return LiveVerdict(
            name,
            version,
            n,
            False,
            [f"{n} of the {minimum} shadowed requests needed (min_samples)"],
        )
    records = rows.to_dict("records")
    metrics: dict[str, float] = {}
    agreements = [a for r in records if (a := _number(r.get("agreement"))) is not None]
    if agreements:
        metrics["agreement"] = sum(agreements) / len(agreements)
    calls = [
        r["candidate_tool_call_ok"]
        for r in records
        if isinstance(r.get("candidate_tool_call_ok"), bool)
    ]
    if calls:
        metrics["tool_call_success_rate"] = sum(calls) / len(calls)
    named_unowned = sum(1 for r in records if (_number(r["candidate_hallucinated_items"]) or 0) > 0)
    metrics["hallucination_rate"] = named_unowned / n
    metrics["error_rate"] = sum(1 for r in records if not r["candidate_ok"]) / n
    both = [r for r in records if _number(r.get("production_latency_ms"))]
    ours = _p95([float(r["candidate_latency_ms"]) for r in both])
    theirs = _p95([float(r["production_latency_ms"]) for r in both])
    if ours is not None and theirs:
        metrics["latency_ratio"] = ours / theirs
    reasons = []
    checks = (
        ("agreement", "agreement_min", "min"),
        ("tool_call_success_rate", "tool_call_success_rate_min", "min"),
        ("hallucination_rate", "hallucination_rate_max", "max"),
        ("error_rate", "error_rate_max", "max"),
        ("latency_ratio", "latency_ratio_max", "max"),
    )
    for metric, bound, kind in checks:
        value = metrics.get(metric)
        if value is None:
            continue
        if (kind == "min" and value < bounds[bound]) or (kind == "max" and value > bounds[bound]):
            sign = "<" if kind == "min" else ">"
            reasons.append(f"{metric} {value:.3g} {sign} {bounds[bound]:g} ({bound})")
    result = LiveVerdict(
        name, version, n, not reasons, reasons, {k: round(v, 4) for k, v in metrics.items()}
    )
    log.info("%s v%d: %s", name, version, result.summary())
    return result
