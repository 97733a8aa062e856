"""The per-stage summary ``make up`` prints, read back from the lake (not from task logs)."""

from __future__ import annotations

from typing import Any


def collect() -> dict[str, dict[str, Any]]:
    from dresscode import ingest

    return {"wardrobe_ingest": ingest.summarize()}


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in counts.items()) or "none"


def render(stages: dict[str, dict[str, Any]], states: dict[str, str]) -> str:
    lines = ["Pipeline summary (from the lake)", "-" * 32]
    ingest = stages.get("wardrobe_ingest")
    if ingest is not None:
        quarantined = sum(ingest["quarantined"].values())
        lines += [
            f"wardrobe_ingest  run: {states.get('wardrobe_ingest', 'not run')}",
            f"  uploads handled   {ingest['uploads']}  (accepted {ingest['accepted']}, duplicates {ingest['duplicates']}, "
            f"quarantined {quarantined}, waiting for retry {ingest['waiting_retry']})",
            f"  quarantined by    {_reasons(ingest['quarantined'])}",
            f"  wardrobe items    {ingest['items']}",
            f"  model calls       {ingest['model_calls']} ({ingest['model_call_errors']} with errors) — simulator, not Gemma",
            f"  left in landing   {ingest['landing_left']}",
        ]
    return "\n".join(lines)
