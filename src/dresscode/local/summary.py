"""The per-stage summary ``make up`` prints, read back from the lake, the registry and Feast.

Nothing here comes from task logs: each number is read from where the pipeline wrote it, so
the summary doubles as a check that the outputs exist.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from dresscode.core import lake, tables
from dresscode.core.prompts import CATALOGUE

# Headline gate metrics shown per prompt (the rest are in the MLflow run).
HEADLINE = {name: spec.headline_metrics for name, spec in CATALOGUE.items()}


def collect() -> dict[str, dict[str, Any]]:
    return {
        "wardrobe_ingest": wardrobe_ingest(),
        "item_embeddings": embeddings(),
        "prompt_release": prompts(),
        "weather_ingest": weather(),
        "style_features": style(),
        "outfit_pregen": outfits(),
        "feedback_ingest": feedback_loop(),
        "model_monitoring": monitoring(),
    }


def embeddings() -> dict[str, Any]:
    """Vectors of the current wardrobe items in Feast's online store, by model; possible
    duplicates marked."""
    from dresscode.core.config import get_settings
    from dresscode.features.embeddings import online

    settings = get_settings()
    marks = lake.read_table(
        tables.ITEM_EMBEDDINGS.name, settings, columns=["item_id", "possible_duplicate_of"]
    )
    if marks.empty:  # item_embeddings never wrote a batch
        return {}
    current = tables.current_wardrobe_items(None, settings)
    ids = [] if current.empty else [str(i) for i in current["item_id"]]
    stored = online.stored(online.open_store(settings), ids)
    models = Counter(model for _user, model, _sha in stored.values())
    marked = int(marks["possible_duplicate_of"].notna().sum())
    return {"vectors": dict(models), "possible_duplicates": marked}


def wardrobe_ingest() -> dict[str, Any]:
    """Uploads by manifest status, quarantine reasons, items, digitize calls, landing left."""
    from dresscode.core.config import get_settings

    settings = get_settings()
    state = tables.manifest_state(settings)
    statuses = Counter(row["status"] for row in state.values())
    reasons = Counter(
        row["reason_code"] for row in state.values() if row["status"] == tables.QUARANTINED
    )
    items = lake.read_table(tables.WARDROBE_ITEMS.name, settings, columns=["item_id"])
    calls = lake.read_table(tables.INFERENCE_LOG.name, settings, columns=["purpose", "error_class"])
    digitize_calls = calls[calls["purpose"] == "digitize"] if not calls.empty else calls
    return {
        "uploads": len(state),
        "accepted": statuses.get(tables.ACCEPTED, 0),
        "duplicates": statuses.get(tables.DUPLICATE, 0),
        "near_duplicates": statuses.get(tables.NEAR_DUPLICATE, 0),
        "quarantined": dict(reasons.most_common()),
        "waiting_retry": statuses.get(tables.DIGITIZE_FAILED, 0)
        + statuses.get(tables.READ_FAILED, 0),
        "items": int(items["item_id"].nunique()) if not items.empty else 0,
        "model_calls": len(digitize_calls),
        "model_call_errors": int(digitize_calls["error_class"].notna().sum())
        if not digitize_calls.empty
        else 0,
        "landing_left": len(tables.landing_keys(settings)),
    }


def feedback_loop() -> dict[str, Any]:
    """Events applied by type, lines rejected by reason, the correction rate, golden candidates."""
    from dresscode.core.config import get_settings
    from dresscode.feedback.events import read_feedback
    from dresscode.feedback.labels import correction_rate
    from dresscode.registry.golden import latest_candidates

    settings = get_settings()
    events = read_feedback(settings)
    rejected: Counter[str] = Counter()
    for path in lake.list_files(tables.REPORTS.path(settings) / "feedback"):
        for line in lake.read_bytes(path).decode().splitlines():
            if line.strip():
                rejected[json.loads(line)["reason"]] += 1
    candidates = latest_candidates(settings)
    status = Counter(candidates["status"]) if not candidates.empty else Counter()
    return {
        "events": dict(Counter(events["event_type"])) if not events.empty else {},
        "rejected": dict(rejected.most_common()),
        "correction": correction_rate(settings),
        "candidates": dict(status),
    }


def monitoring(last: int = 3) -> dict[str, Any]:
    """The latest monitoring decisions (branch, action, reasons, report) and the pages written."""
    from dresscode.orchestration import alerts

    decisions = lake.read_table(tables.MONITORING_DECISIONS.name)
    rows = []
    if not decisions.empty:
        for row in decisions.sort_values("decided_at").tail(last).to_dict("records"):
            rows.append(
                {
                    "window": f"{row['window_start'][:19]} .. {row['window_end'][:19]}",
                    "branch": row["branch"],
                    "action": row["action"],
                    "reasons": json.loads(row["reasons"]),
                    "report": row["drift_report"],
                }
            )
    pages = [a for a in alerts.read_alerts() if a["kind"] == "page"]
    return {
        "decisions": rows,
        "pages": len(pages),
        "last_page": pages[-1]["text"] if pages else None,
    }


def prompts() -> dict[str, Any]:
    """Per prompt: the production version and the metrics of its last gate evaluation."""
    from dresscode.llm import blueprints
    from dresscode.registry import prompt_registry as registry

    found: dict[str, Any] = {}
    for name in blueprints.prompt_names():
        versions = registry.versions(name)
        production = next((v for v in versions if "production" in v.aliases), None)
        if production is None:
            found[name] = {"production": None}
            continue
        metrics = json.loads(production.tags.get(registry.GATE_METRICS_TAG) or "{}")
        found[name] = {
            "production": production.git_version,
            "gate": production.gate,
            "metrics": {k: metrics[k] for k in HEADLINE.get(name, ()) if k in metrics},
        }
    return found


def weather() -> dict[str, Any]:
    """The newest weather run report: cities with weather, missing ones and why."""
    reports = [p for p in lake.list_files(tables.REPORTS.path()) if "weather-run-" in p.name]
    if not reports:
        return {}
    latest = max((lake.read_json(p) for p in reports), key=lambda r: r.get("at", r["day"]))
    missing = latest.get("missing_cities", [])
    return {
        "cities": latest["cities"],
        "with_weather": latest["with_weather"],
        "missing": {m["city"]: m["reason"] for m in missing},
        "provider_calls": latest["provider_calls"],
        "cache_hits": latest["cache_hits"],
    }


def style() -> dict[str, Any]:
    """Users with style features offline, and how many of them the online store serves."""
    import logging

    from dresscode.features import store as features

    logging.getLogger("feast").setLevel(logging.WARNING)  # its INFO chatter is not the summary
    columns = ["user_id", "wardrobe_size", "event_timestamp"]
    table = lake.read_table(tables.USER_STYLE.name, columns=columns)
    if table.empty:
        return {}
    latest = table.sort_values("event_timestamp").drop_duplicates("user_id", keep="last")
    online = features.online_context(
        [{"user_id": u, "city_id": "-"} for u in sorted(latest["user_id"])]
    )
    return {
        "users": len(latest),
        "online": int(online["wardrobe_size"].notna().sum()),
        "empty_wardrobes": int((latest["wardrobe_size"] == 0).sum()),
    }


def outfits() -> dict[str, Any]:
    """The newest day's suggestions: written, skipped by reason, hallucinations caught."""
    table = lake.read_table(tables.OUTFIT_SUGGESTIONS.name)
    if table.empty:
        return {}
    day = table["day"].max()
    today = table[table["day"] == day]
    if "generated_at" in today.columns:  # the newest suggestion per user wins
        today = today.sort_values("generated_at").drop_duplicates("user_id", keep="last")
    skipped = Counter(today.loc[today["status"] != "ok", "skip_reason"].astype(str))
    return {
        "day": day,
        "users": len(today),
        "suggested": int((today["status"] == "ok").sum()),
        "skipped": dict(skipped.most_common()),
        "hallucinated_items": int(today["n_dropped_items"].sum()),
        "rule_violations": int(today["rule_violations"].map(len).sum()),
        "coerced_args": int(today["coerced_args"].sum()),
    }


def _reasons(counts: dict[str, Any]) -> str:
    return ", ".join(f"{code} {n}" for code, n in counts.items()) or "none"


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {round(v, 3):g}" for k, v in metrics.items()) or "no gate metrics"


def render(stages: dict[str, dict[str, Any]], states: dict[str, str]) -> str:
    lines = ["Pipeline summary (from the lake, the registry and Feast)", "-" * 56]

    def head(dag_id: str) -> None:
        lines.append(f"{dag_id:16} run: {states.get(dag_id, 'not run')}")

    ingest = stages.get("wardrobe_ingest")
    if ingest is not None:
        quarantined = sum(ingest["quarantined"].values())
        head("wardrobe_ingest")
        lines += [
            f"  uploads handled   {ingest['uploads']}  (accepted {ingest['accepted']}, duplicates {ingest['duplicates']}, "
            f"quarantined {quarantined}, waiting for retry {ingest['waiting_retry']})",
            f"  quarantined by    {_reasons(ingest['quarantined'])}",
            f"  wardrobe items    {ingest['items']}",
            f"  model calls       {ingest['model_calls']} ({ingest['model_call_errors']} with errors) — simulator, not Gemma",
            f"  calls avoided     {ingest.get('near_duplicates', 0)} near-duplicate photos (the same picture re-sent) not digitized",
            f"  left in landing   {ingest['landing_left']}",
        ]
    vectors = stages.get("item_embeddings")
    if vectors:
        head("item_embeddings")
        for model, n in vectors["vectors"].items():
            lines.append(f"  item vectors      {n} ({model}, a real model on CPU)")
        lines.append(
            f"  possible dupes    {vectors['possible_duplicates']} items marked "
            "possible_duplicate_of (the user confirms; nothing deleted)"
        )
    release = stages.get("prompt_release")
    if release:
        head("prompt_release")
        for name, info in release.items():
            if info.get("production") is None:
                lines.append(f"  {name:22} nothing in production")
                continue
            lines.append(
                f"  {name:22} production v{info['production']} (gate {info['gate']}): "
                f"{_metrics(info['metrics'])} — on the simulator"
            )
    weather = stages.get("weather_ingest")
    if weather:
        head("weather_ingest")
        missing = ", ".join(f"{c} ({r})" for c, r in weather["missing"].items()) or "none"
        lines += [
            f"  cities            {weather['with_weather']} of {weather['cities']} with weather "
            f"({weather['provider_calls']} provider calls, {weather['cache_hits']} from cache) — weather stub",
            f"  missing           {missing}",
        ]
    style = stages.get("style_features")
    if style:
        head("style_features")
        lines.append(
            f"  users             {style['users']} with features, {style['online']} served online "
            f"({style['empty_wardrobes']} with an empty wardrobe)"
        )
    outfits = stages.get("outfit_pregen")
    if outfits:
        head("outfit_pregen")
        lines += [
            f"  suggestions       {outfits['suggested']} of {outfits['users']} users for {outfits['day']}",
            f"  skipped by        {_reasons(outfits['skipped'])}",
            f"  caught            {outfits['hallucinated_items']} hallucinated items dropped, "
            f"{outfits['rule_violations']} outfits removed by weather rules, "
            f"{outfits['coerced_args']} string tool arguments coerced",
        ]
    loop = stages.get("feedback_ingest")
    if loop and (loop["events"] or loop["rejected"]):
        rate = loop["correction"]["correction_rate"]
        head("feedback_ingest")
        lines += [
            f"  events applied    {_reasons(loop['events'])}",
            f"  lines rejected    {_reasons(loop['rejected'])} (kept in reports/feedback/)",
            f"  correction rate   {'n/a' if rate is None else f'{rate:.1%}'} of photos "
            f"({loop['correction']['corrected_photos']} of {loop['correction']['photos']})",
            f"  golden candidates {_reasons(loop['candidates'])} (accept: dresscode golden accept)",
        ]
    watch = stages.get("model_monitoring")
    if watch and watch["decisions"]:
        lines.append(f"{'model_monitoring':16} last {len(watch['decisions'])} decisions")
        for d in watch["decisions"]:
            lines.append(f"  {d['window']}  {d['branch']} -> {d['action']}")
            lines += [f"    - {reason}" for reason in d["reasons"][:4]]
            if d["report"]:
                lines.append(f"    drift report: {d['report']}")
        if watch["last_page"]:
            lines.append(f"  pages written     {watch['pages']}; the last one:")
            lines += [f"    | {line}" for line in watch["last_page"].splitlines()]
    return "\n".join(lines)
