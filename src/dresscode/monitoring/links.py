"""What a monitoring page links to in MLflow: the runs, prompt versions and traces it is about.

The on-call reading a page at 3 a.m. should reach the evidence in one click: the drift run
(its report is an artifact there), each re-evaluation's run and the prompt version it
evaluated, and — when the stylist is in question — the heaviest outfit-suggestion trace of the
window (its turns and tool calls are spans: a model looping on the weather tool shows there).
With an MLflow server (``make up``'s, production's) each line is a URL into its UI; with a
file store there is no UI and the lines name the ids. Building them never fails a page:
MLflow unreachable leaves the ids and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from dresscode.core import prompts
from dresscode.core.config import environ_overrides

if TYPE_CHECKING:
    from dresscode.monitoring.tasks import Decision, Evaluation, Window

log = logging.getLogger(__name__)

TRACE_SEARCH_LIMIT = 500  # traces of the window looked at for the heaviest suggestion
SUGGESTION_SPAN = "outfit_suggestion"
STYLIST = prompts.STYLIST.name
TOKENS_ATTRIBUTE = "dresscode.tokens"
# One short try per lookup: MLflow's default retries would hold the page for minutes.
QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def ui_base() -> str | None:
    """The MLflow UI's address: the tracking URI when it is a server (a file store has none)."""
    from dresscode.registry.store import tracking_uri

    uri = tracking_uri().rstrip("/")
    return uri if uri.startswith(("http://", "https://")) else None


def trace_url(ui: str, experiment_id: str, trace_id: str) -> str:
    return f"{ui}/#/experiments/{experiment_id}/traces?traceId={trace_id}"


def run_line(what: str, run_id: str | None, ui: str | None) -> str | None:
    if not run_id or run_id == "-":
        return None
    return f"{what}: {ui}/#/runs/{run_id}" if ui else f"{what}: MLflow run {run_id}"


def _prompt_urls(names: set[str], ui: str) -> dict[tuple[str, int], str]:
    from dresscode.registry import prompt_registry as registry

    urls = {}
    for name in sorted(names):
        for info in registry.versions(name):
            urls[(name, info.git_version)] = (
                f"{ui}/#/prompts/{name}?promptVersion={info.mlflow_version}"
            )
    return urls


def heaviest_suggestion(start: datetime, end: datetime) -> tuple[str, str, int] | None:
    """``(experiment id, trace id, tokens)`` of the window's outfit-suggestion trace that
    used the most tokens (of the window's first :data:`TRACE_SEARCH_LIMIT` traces), or None."""
    from mlflow import MlflowClient

    from dresscode.llm.tracing import EXPERIMENT
    from dresscode.registry.store import tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri())
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return None
    window = (
        f"trace.timestamp_ms >= {int(start.timestamp() * 1000)} "
        f"AND trace.timestamp_ms < {int(end.timestamp() * 1000)}"
    )
    traces = client.search_traces(
        locations=[experiment.experiment_id],
        filter_string=window,
        max_results=TRACE_SEARCH_LIMIT,
    )
    best: tuple[str, str, int] | None = None
    for trace in traces:
        root = next((s for s in trace.data.spans if s.parent_id is None), None)
        if root is None or root.name != SUGGESTION_SPAN:
            continue
        tokens = int(root.get_attribute(TOKENS_ATTRIBUTE) or 0)
        if best is None or tokens > best[2]:
            best = (experiment.experiment_id, trace.info.trace_id, tokens)
    return best


def page_details(
    decision: Decision, evaluated: Sequence[Evaluation], window: Window
) -> dict[str, str]:
    """The page's ``MLflow`` detail (one line per link), or nothing when there is nothing to
    link. The trace is looked up when the stylist is re-evaluated (one of its SLOs broke)."""
    with environ_overrides(QUICK):
        text = _lines(decision, evaluated, window)
    return {"MLflow": text} if text else {}


def _lines(decision: Decision, evaluated: Sequence[Evaluation], window: Window) -> str:
    ui = ui_base()
    lines = [run_line("drift report run", decision["evidence"].get("drift_run"), ui)]
    runs = [
        (entry["name"], role, r)
        for entry in evaluated
        for role, r in (("production", entry["production"]), ("candidate", entry["candidate"]))
        if r is not None
    ]
    prompt_urls: dict[tuple[str, int], str] = {}
    if ui and runs:
        try:
            prompt_urls = _prompt_urls({name for name, _, _ in runs}, ui)
        except Exception as exc:  # the run links below still stand
            log.warning("page: no prompt-version links, the registry failed: %s", exc)
    for name, role, r in runs:
        lines.append(run_line(f"{name}@{r['version']} ({role}) evaluation", r["mlflow_run_id"], ui))
        if (name, r["version"]) in prompt_urls:
            lines.append(f"{name}@{r['version']} prompt: {prompt_urls[(name, r['version'])]}")
    if STYLIST in decision["reevaluate"]:
        start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
        lines.append(_trace_line(start, end, ui))
    return "\n".join(line for line in lines if line)


def _trace_line(start: datetime, end: datetime, ui: str | None) -> str | None:
    try:
        found = heaviest_suggestion(start, end)
    except Exception as exc:  # a page goes out without its trace link, never not at all
        why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        log.warning("page: no trace link, MLflow failed: %s", why)
        return f"heaviest outfit suggestion trace: not looked up, MLflow failed ({why})"
    if found is None:
        return None
    experiment_id, trace_id, tokens = found
    where = trace_url(ui, experiment_id, trace_id) if ui else f"trace {trace_id}"
    return f"heaviest outfit suggestion trace ({tokens:,} tokens): {where}"
