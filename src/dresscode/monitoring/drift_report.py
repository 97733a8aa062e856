"""The drift report: the HTML report and its JSON summary in the lake, and an MLflow run.

:func:`write_report` writes ``reports/drift/date=<day>/<key>.html`` and ``<key>.json``, each
atomically (a placeholder page when no column could be tested); :func:`log_to_mlflow` records
the verdict, the per-column scores and both files in the ``dresscode-monitoring`` experiment,
and carries on with a warning when MLflow is unreachable: the report is already in the lake.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from dresscode.core import lake
from dresscode.core.config import Settings, get_settings
from dresscode.monitoring.drift import DriftResult, DriftSummary

log = logging.getLogger(__name__)

EXPERIMENT = "dresscode-monitoring"


def write_report(
    result: DriftResult,
    key: str,
    settings: Settings | None = None,
    *,
    day: date | str | None = None,
) -> dict[str, str]:
    """Write ``reports/drift/date=<day>/<key>.html`` and ``<key>.json`` (the summary), each
    atomically; ``day`` defaults to the current window's start day. Returns their URIs."""
    settings = settings or get_settings()
    lake.safe_segment(key, what="report key")
    if day is None:
        day = (result.current.start if result.current else datetime.now(UTC)).date()
    day_str = day.isoformat() if isinstance(day, date) else date.fromisoformat(day).isoformat()
    folder = lake.table("reports", settings) / "drift" / f"date={day_str}"
    html_path, json_path = folder / f"{key}.html", folder / f"{key}.json"
    lake.write_bytes(html_path, (result.html or _placeholder_html(result)).encode())
    lake.write_json(json_path, result.summary())
    paths = {"html": str(html_path), "json": str(json_path)}
    log.info("drift report written: %s, %s", paths["html"], paths["json"])
    return paths


def _placeholder_html(result: DriftResult) -> str:
    import html

    rows = "".join(
        f"<tr><td>{html.escape(c.column)}</td><td>{c.n_reference}</td><td>{c.n_current}</td></tr>"
        for c in result.columns
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title></head>"
        "<body><h1>Drift report: not enough data</h1>"
        f"<p>No column had {result.min_rows} values in both windows, so nothing was tested "
        "and no drift is reported.</p><table><tr><th>column</th><th>reference values</th>"
        f"<th>current values</th></tr>{rows}</table></body></html>"
    )


def log_to_mlflow(
    result: DriftResult,
    paths: dict[str, str],
    run_name: str,
    settings: Settings | None = None,
) -> str | None:
    """One run in ``dresscode-monitoring``: the verdict, per-column scores and both report
    files as artifacts. Returns the run id, or None (with a warning) when MLflow is
    unreachable: the report is already in the lake and the drift decision must not wait."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from dresscode.orchestration.alerts import first_line
    from dresscode.registry import prompt_registry as registry

    settings = settings or get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    summary = result.summary()
    try:
        registry.use_experiment(mlflow, EXPERIMENT, settings)
        with mlflow.start_run(run_name=run_name) as run:
            mlflow.set_tags(_tags(result, paths))
            mlflow.log_metrics(_metrics(result, summary))
            for uri in paths.values():
                data = lake.read_bytes(lake.storage_path(uri, settings))
                mlflow.log_text(data.decode(), f"drift/{uri.rsplit('/', 1)[-1]}")
    except MlflowException as exc:
        if not registry.is_unreachable(exc):
            raise
        log.warning(
            "drift: MLflow at %s is unreachable, report kept only in the lake (%s): %s "
            "(reason: mlflow_unreachable)",
            settings.mlflow_tracking_uri,
            paths.get("json"),
            first_line(exc),
        )
        return None
    log.info("drift: MLflow run %s in %s", run.info.run_id, EXPERIMENT)
    return run.info.run_id


def _metrics(result: DriftResult, summary: DriftSummary) -> dict[str, float]:
    metrics = {
        "drifted": float(result.drifted),
        "drift_share": result.drift_share,
        "n_drifted": float(summary["n_drifted"]),
        "n_tested": float(summary["n_tested"]),
        "n_not_enough_data": float(summary["n_not_enough_data"]),
        "n_reference": float(result.n_reference),
        "n_current": float(result.n_current),
    }
    for col in result.columns:
        if col.score is not None:
            metrics[f"score.{col.column}"] = col.score
            metrics[f"drifted.{col.column}"] = float(col.status == "drifted")
    return metrics


def _tags(result: DriftResult, paths: dict[str, str]) -> dict[str, str]:
    tags = {
        "dresscode.drift.drifted": str(result.drifted).lower(),
        "dresscode.drift.moved": ", ".join(c.column for c in result.moved()) or "-",
        "dresscode.drift.report_html": paths.get("html", "-"),
        "dresscode.drift.report_json": paths.get("json", "-"),
    }
    for table, version in sorted(result.lake_versions.items()):
        tags[f"dresscode.lake.{table}_version"] = str(version)  # what the frames read
    for name, window in (("reference", result.reference), ("current", result.current)):
        if window is not None:
            tags[f"dresscode.drift.{name}"] = (
                f"{window.source} [{window.start.isoformat()}, {window.end.isoformat()})"
            )
    return tags


def drift_text(result: DriftResult) -> str:
    """One line per tested or skipped column, drifted first (for the page and the log)."""
    lines = []
    order = {"drifted": 0, "stable": 1, "not_enough_data": 2}
    for c in sorted(result.columns, key=lambda c: (order.get(c.status, 3), c.column)):
        if c.status == "not_enough_data":
            lines.append(
                f"{c.column}: not enough data ({c.n_reference} reference, {c.n_current} current rows)"
            )
            continue
        score = "" if c.score is None else f" {c.stattest} {c.score:.3g}"
        bound = "" if c.threshold is None else f" (threshold {c.threshold:.3g})"
        lines.append(f"{c.column}: {c.status}{score}{bound}")
    return "\n".join(lines)
