"""Model calls as MLflow traces, sampled, after the fact, never failing a task.

:func:`note` keeps a sampled share (``DRESSCODE_TRACE_SAMPLE_RATE``) of the finished
inference-log rows :func:`dresscode.llm.ask.ask` builds — a copy of a few whitelisted fields,
so a trace can never carry image bytes, prompts or keys. The sample is decided by a hash of
the call's request id, or of the user for the stylist, so every turn of a sampled suggestion
is kept. Nothing is sent while the model is being called: the client's cost per call is one
hash and, for a sampled call, one small dict.

:func:`flush` (at the end of a batch task) turns what was kept into traces in the
``dresscode-traces`` experiment, with the calls' own times: a digitizer call is a trace of one
LLM span; a stylist suggestion is one trace (``outfit_suggestion``) with an LLM span per turn
and a TOOL span for each turn's tool calls. Each LLM span carries TTFT, latency, attempts,
the failure class, the finish reason and the tokens. MLflow unreachable, or any MLflow error,
drops the traces with a count and a warning: tracing never fails a task. At most
:data:`MAX_BUFFERED` calls wait for a flush (more are dropped and counted), and a suggestion
longer than :data:`MAX_SPANS` spans keeps its first ones (the trace says how many it cut).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dresscode.core.config import environ_overrides

log = logging.getLogger(__name__)

EXPERIMENT = "dresscode-traces"
MAX_BUFFERED = 10_000
MAX_SPANS = 50
# What a span may carry: counts, times, classes, ids. Never content, prompts or bytes.
FIELDS = ("request_id", "ts", "purpose", "prompt_name", "prompt_version", "model", "ttft_ms",
          "latency_ms", "prompt_tokens", "completion_tokens", "http_status", "finish_reason",
          "parse_ok", "schema_ok", "repaired", "n_items", "tool_calls", "tool_call_ok",
          "hallucinated_items", "error_class", "attempts", "user_id", "turn")  # fmt: skip
STYLIST_PURPOSE = "outfit"

_lock = threading.Lock()
_kept: list[dict[str, Any]] = []
_dropped = 0


def sample_rate() -> float:
    from dresscode.core.config import get_settings

    return get_settings().trace_sample_rate


def sampled(key: str, rate: float) -> bool:
    """Deterministic: the same key is always in or always out at a given rate."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


def note(record: dict[str, Any], rate: float | None = None) -> None:
    """Keep a sampled call's whitelisted fields for the next :func:`flush`."""
    global _dropped
    rate = sample_rate() if rate is None else rate
    key = str(record.get("request_id"))
    if record.get("purpose") == STYLIST_PURPOSE and record.get("user_id"):
        key = f"{record['user_id']}|{str(record.get('ts', ''))[:10]}"
    if not sampled(key, rate):
        return
    kept = {k: record.get(k) for k in FIELDS if k in record}
    with _lock:
        if len(_kept) >= MAX_BUFFERED:
            _dropped += 1
        else:
            _kept.append(kept)


@dataclass(frozen=True)
class Flushed:
    traces: int
    dropped: int  # calls not traced: MLflow failed, or the buffer was full


def _take() -> tuple[list[dict[str, Any]], int]:
    global _dropped
    with _lock:
        kept, dropped = list(_kept), _dropped
        _kept.clear()
        _dropped = 0
    return kept, dropped


def _ns(record: dict[str, Any]) -> tuple[int, int]:
    """Start and end of a call in ns: the row's ``ts`` is when it finished."""
    end = int(datetime.fromisoformat(str(record["ts"])).timestamp() * 1e9)
    return end - int(float(record.get("latency_ms") or 0) * 1e6), end


def groups(kept: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """One trace per digitizer call; one per stylist suggestion (a user's turns of a day)."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for record in kept:
        key = str(record.get("request_id"))
        if record.get("purpose") == STYLIST_PURPOSE and record.get("user_id"):
            key = f"outfit|{record['user_id']}|{str(record.get('ts', ''))[:10]}"
        by_key.setdefault(key, []).append(record)
    return [sorted(g, key=lambda r: str(r.get("ts"))) for g in by_key.values()]


def _attributes(record: dict[str, Any]) -> dict[str, Any]:
    """The call's fields, and its tokens where MLflow's UI looks for them."""
    attrs: dict[str, Any] = {f"dresscode.{k}": v for k, v in record.items() if v is not None}
    prompt, completion = record.get("prompt_tokens"), record.get("completion_tokens")
    if prompt is not None and completion is not None:
        attrs["mlflow.chat.tokenUsage"] = {
            "input_tokens": int(prompt),
            "output_tokens": int(completion),
            "total_tokens": int(prompt) + int(completion),
        }
    return attrs


def _summary(calls: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the trace list shows as the trace's input and output: ids and outcomes only."""
    first, last = calls[0], calls[-1]
    inputs = {"prompt": f"{first.get('prompt_name')}@{first.get('prompt_version')}",
              "model": first.get("model"), "user_id": first.get("user_id")}  # fmt: skip
    outputs = {"calls": len(calls), "error_class": last.get("error_class"),
               "finish_reason": last.get("finish_reason"),
               "tool_calls": sum(int(c.get("tool_calls") or 0) for c in calls)}  # fmt: skip
    return inputs, outputs


def _trace(mlflow: Any, calls: list[dict[str, Any]], experiment_id: str) -> None:
    from mlflow.entities import SpanType

    suggestion = calls[0].get("purpose") == STYLIST_PURPOSE
    spans = calls[:MAX_SPANS]
    start, _ = _ns(spans[0])
    _, end = _ns(spans[-1])
    name = "outfit_suggestion" if suggestion else f"{calls[0].get('purpose')}_call"
    root_attrs = {
        "dresscode.calls": len(calls),
        "dresscode.spans_cut": len(calls) - len(spans),
        "dresscode.prompt": f"{calls[0].get('prompt_name')}@{calls[0].get('prompt_version')}",
        "dresscode.tokens": sum(
            int(c.get("prompt_tokens") or 0) + int(c.get("completion_tokens") or 0) for c in calls
        ),
    }
    inputs, outputs = _summary(calls)
    root = mlflow.start_span_no_context(
        name,
        span_type=SpanType.CHAIN if suggestion else SpanType.LLM,
        inputs=inputs,
        attributes=root_attrs if suggestion else {**root_attrs, **_attributes(spans[0])},
        experiment_id=experiment_id,
        start_time_ns=start,
    )
    if suggestion:
        for call in spans:
            call_start, call_end = _ns(call)
            span = mlflow.start_span_no_context(
                f"turn {call.get('turn')}",
                span_type=SpanType.LLM,
                parent_span=root,
                attributes=_attributes(call),
                start_time_ns=call_start,
            )
            if call.get("tool_calls"):
                tool = mlflow.start_span_no_context(
                    "get_weather",
                    span_type=SpanType.TOOL,
                    parent_span=span,
                    attributes={
                        "dresscode.tool_calls": call.get("tool_calls"),
                        "dresscode.tool_call_ok": call.get("tool_call_ok"),
                    },
                    start_time_ns=call_end,
                )
                tool.end(end_time_ns=call_end)
            span.end(end_time_ns=call_end)
    root.end(outputs=outputs, end_time_ns=end)


# Export each trace before the next, so a failure is seen here and not in a background
# queue; and give up on an unreachable server after one short try, not MLflow's minutes of
# retries: a trace is never worth holding up a task.
_EXPORT_ENV = {
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


@contextmanager
def _exporting() -> Iterator[None]:
    with environ_overrides(_EXPORT_ENV):
        yield


def flush() -> Flushed:
    """Send the kept calls as traces; never raises. Returns what was sent and dropped."""
    kept, dropped = _take()
    if not kept:
        if dropped:
            log.warning("traces: %d call(s) dropped (the trace buffer was full)", dropped)
        return Flushed(0, dropped)
    traced = groups(kept)
    try:
        import mlflow

        from dresscode.core.config import get_settings

        with _exporting():
            mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
            experiment = mlflow.get_experiment_by_name(EXPERIMENT)
            experiment_id = (
                experiment.experiment_id if experiment else mlflow.create_experiment(EXPERIMENT)
            )
            for calls in traced:
                _trace(mlflow, calls, experiment_id)
    except Exception as exc:  # tracing is a view on the work, never a reason to fail it
        log.warning(
            "traces: %d trace(s) of %d call(s) dropped, MLflow failed: %s",
            len(traced),
            len(kept),
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        return Flushed(0, dropped + len(kept))
    log.info("traces: %d trace(s) of %d sampled call(s) sent to MLflow", len(traced), len(kept))
    return Flushed(len(traced), dropped)
