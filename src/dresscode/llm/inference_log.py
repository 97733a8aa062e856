"""The inference log: one flat row per model call, the monitoring source of truth.

:func:`inference_record` turns a :class:`~dresscode.llm.client.ChatResult` (and its
:class:`~dresscode.llm.parsing.ParseOutcome`) into one ``inference_log`` row
(:class:`dresscode.core.tables.InferenceLogRow`). Every field keeps one type across rows, so
the Parquet parts of a day agree. Prompt text, image bytes and the API key are never in it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dresscode.llm.client import ChatResult
    from dresscode.llm.parsing import ParseOutcome

__all__ = ["inference_record"]


def inference_record(
    result: ChatResult,
    *,
    purpose: str,
    prompt_name: str,
    prompt_version: str | int,
    parse: ParseOutcome | None = None,
    n_items: int | None = None,
    tool_calls: int | None = None,
    tool_call_ok: bool | None = None,
    hallucinated_items: int = 0,
    extra: dict | None = None,
) -> dict:
    """One flat ``inference_log`` row; every field keeps one type across rows (Parquet).

    ``error_class`` is the transport failure when the call failed, else the parse failure
    (``repetition``, ``schema_violation``, ...) when there was one, else None — one column
    that says what went wrong with the call. ``tool_calls`` defaults to the calls in
    ``result``; pass a total for multi-turn tool loops. ``extra`` adds columns (it may not
    replace one).
    """
    error_class = result.error_class
    if error_class is None and parse is not None and parse.failure is not None:
        error_class = str(parse.failure)
    record: dict[str, Any] = {
        "request_id": result.request_id,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "purpose": purpose,
        "prompt_name": prompt_name,
        "prompt_version": str(prompt_version),
        "model": result.model,
        "ttft_ms": _float_or_none(result.ttft_ms),
        "latency_ms": float(result.latency_ms),
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "http_status": int(result.http_status),
        "finish_reason": result.finish_reason,
        "parse_ok": parse.parse_ok if parse is not None else None,
        "schema_ok": parse.schema_ok if parse is not None else None,
        "repaired": parse.repaired if parse is not None else None,
        "n_items": n_items,
        "tool_calls": len(result.tool_calls) if tool_calls is None else int(tool_calls),
        "tool_call_ok": tool_call_ok,
        "hallucinated_items": int(hallucinated_items),
        "error_class": error_class,
        "attempts": int(result.attempts),
    }
    for key, value in (extra or {}).items():
        if key in record:
            raise ValueError(f"extra field {key!r} would replace a standard inference-log field")
        record[key] = value
    return record


def _float_or_none(value: float | None) -> float | None:
    return None if value is None else float(value)
