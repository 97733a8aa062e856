"""The Dresscode view: one page in Airflow's UI with what the pipelines decided, per prompt.

Per prompt: the registered versions with their aliases and gate verdicts (MLflow), the metrics
of the last gate evaluations (the ``dresscode.gate_metrics`` tags), and the last 7 days of the
SLO metrics from the lake's ``quality_metrics`` table as small inline-SVG sparklines. For the
whole pipeline: the last drift decision (``monitoring_decisions``) with a link to its HTML
report, the top quarantine reasons (latest manifest row per upload), and what the model calls
cost per day against the budget (:mod:`dresscode.ui.cost`).

Everything is read at request time (no cache: the page is for people, not for polling) and
rendered server-side: no JavaScript, no external assets, every value ``html.escape``-d, and
the pages say so to the browser (:data:`PAGE_HEADERS`). The drift report is served by this
app, rebuilt from a date and a file name under the lake's ``reports/drift/`` — never from a
path taken from a request — as a sandboxed document (:data:`REPORT_HEADERS`): it runs in an
opaque origin, so even a report carrying a payload cannot script the Airflow origin, read the
session cookie or call the API. The JSON names lake files relative to the lake root, never by
their host path.

:func:`create_app` builds the FastAPI app the Airflow plugin (``plugins/dresscode_view.py``)
mounts; every route requires an authenticated Airflow user through Airflow's own
``requires_authenticated`` dependency (the JWT in the ``Authorization`` header or the UI's
``_token`` cookie). mlflow and pandas are imported inside functions only: the plugin module
is imported by every Airflow process.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

# FastAPI resolves route annotations from module globals: these cannot be local imports.
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from dresscode.core import lake, tables
from dresscode.core.config import Settings, get_settings
from dresscode.ui.daily import last_days, pooled

if TYPE_CHECKING:
    from dresscode.ui.cost import CostOverview

URL_PREFIX = "/dresscode"
SLO_DAYS = 7
LAST_EVALUATIONS = 3
TOP_QUARANTINE = 5
REPORT_ROUTE = "drift-report"

# The view's pages: no script at all, styles inline, images only as data: (none today).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
JSON_HEADERS = {"X-Content-Type-Options": "nosniff"}
# A drift report is Evidently's self-contained page, whose charts are drawn by its inline
# scripts. ``sandbox`` without ``allow-same-origin`` gives it an opaque origin: its scripts
# cannot read Airflow's cookies or storage, nor call Airflow's API as the user; without
# ``allow-modals``/``allow-forms``/``allow-popups`` it opens no dialog, form or window; and
# nothing it holds can be sent anywhere (no connect, images or fonts from any URL).
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:; font-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class UnknownPrompt(LookupError):
    """A prompt name with no blueprint folder in git."""


# --- data ------------------------------------------------------------------------------------


def prompt_names() -> list[str]:
    """The prompts that exist: those with blueprints in git (the registry mirrors git)."""
    from dresscode.llm import blueprints

    return blueprints.prompt_names()


def check_prompt(name: str) -> str:
    known = prompt_names()
    if name not in known:
        raise UnknownPrompt(f"unknown prompt {name!r}; known prompts: {', '.join(known)}")
    return name


def versions(name: str) -> list[dict[str, Any]]:
    """Every registered version with its aliases, gate verdict, gate time and gate metrics."""
    from dresscode.registry import prompt_registry as registry

    return [
        {
            "version": info.git_version,
            "mlflow_version": info.mlflow_version,
            "aliases": list(info.aliases),
            "gate": info.gate,
            "blocked": info.block.describe() if info.block is not None else None,
            "gate_at": info.tags.get(registry.GATE_AT_TAG),
            "gate_metrics": json.loads(info.tags.get(registry.GATE_METRICS_TAG) or "{}"),
            "gate_run": info.tags.get(registry.GATE_RUN_TAG) or None,
            **_mlflow_links(name, info.mlflow_version, info.tags.get(registry.GATE_RUN_TAG)),
        }
        for info in registry.versions(name)
    ]


def _mlflow_links(name: str, version: int, run_id: str | None) -> dict[str, str | None]:
    """Links into MLflow's UI (the prompt version, its gate evaluation run), when it has one."""
    from dresscode.registry.store import ui_links

    links = ui_links()
    if links is None:
        return {"prompt_url": None, "run_url": None}
    prompt, run = links
    return {
        "prompt_url": prompt.format(name=name, version=version),
        "run_url": run.format(run_id=run_id) if run_id else None,
    }


def last_evaluations(rows: list[dict[str, Any]], last: int = LAST_EVALUATIONS) -> list[dict]:
    """The newest gate evaluations (versions with a gate time), newest first."""
    evaluated = [r for r in rows if r["gate_at"]]
    evaluated.sort(key=lambda r: r["gate_at"], reverse=True)
    return [
        {
            "version": r["version"],
            "gate": r["gate"],
            "at": r["gate_at"],
            "metrics": r["gate_metrics"],
            "run_url": r.get("run_url"),
        }
        for r in evaluated[:last]
    ]


def slo_series(
    name: str, settings: Settings | None = None, *, today: date | None = None
) -> dict[str, Any]:
    """The SLO metrics of ``name`` for the last 7 days, one value per day (None: no data).

    Versions are pooled per day by an ``n``-weighted mean (exact for rates; for percentiles
    an approximation, good enough for a sparkline — the table keeps the per-version values).
    """
    from dresscode.monitoring import metrics as monitoring
    from dresscode.monitoring import slos

    settings = settings or get_settings()
    today = today or datetime.now(UTC).date()
    days = last_days(today, SLO_DAYS)
    frame = monitoring.read_metrics(days=days, settings=settings)
    frame = frame[frame["prompt_name"] == name]
    series: dict[str, Any] = {}
    for slo, bound in slos.default_slos(settings).items():
        metric, kind = slo.rsplit("_", 1)
        rows = frame[(frame["metric"] == metric) & (frame["n"] > 0) & frame["value"].notna()]
        if rows.empty:
            continue
        values = [pooled(rows[rows["day"] == day]) for day in days]
        series[metric] = {"slo": kind, "bound": bound, "values": values}
    return {"days": days, "metrics": series}


def feedback_by_version(
    name: str, settings: Settings | None = None, *, today: date | None = None
) -> list[dict[str, Any]]:
    """Users' verdicts per version of ``name`` over the last 7 days: each feedback metric
    (thumbs-down and wore-instead rates) pooled over the days, with its ``n``."""
    from dresscode.monitoring import metrics as monitoring
    from dresscode.monitoring.outfit_feedback import FEEDBACK_METRICS

    settings = settings or get_settings()
    today = today or datetime.now(UTC).date()
    days = last_days(today, SLO_DAYS)
    frame = monitoring.read_metrics(days=days, settings=settings)
    frame = frame[(frame["prompt_name"] == name) & frame["metric"].isin(FEEDBACK_METRICS)]
    frame = frame[(frame["n"] > 0) & frame["value"].notna()]
    rows = []
    for version, group in frame.groupby("prompt_version", sort=True):
        row: dict[str, Any] = {"version": str(version)}
        for metric in FEEDBACK_METRICS:
            picked = group[group["metric"] == metric]
            row[metric] = pooled(picked)
            row[f"{metric}_n"] = int(picked["n"].sum())
        rows.append(row)
    return rows


def last_decision(settings: Settings | None = None) -> dict[str, Any] | None:
    """The newest ``monitoring_decisions`` row, with a link to its drift report if it has one."""
    settings = settings or get_settings()
    frame = lake.read_table(tables.MONITORING_DECISIONS.name, settings)
    if frame.empty:
        return None
    row = frame.sort_values("decided_at").iloc[-1].to_dict()
    report = row.get("drift_report")
    return {
        "decided_at": row["decided_at"],
        "window_start": row["window_start"],
        "window_end": row["window_end"],
        "branch": row["branch"],
        "action": row["action"],
        "reasons": json.loads(row["reasons"] or "[]"),
        "drifted_columns": json.loads(row["drifted_columns"] or "[]"),
        "drift_report": lake_relative(report, settings) if isinstance(report, str) else None,
        "drift_report_written": isinstance(report, str) and bool(report),
        "report_ref": report_ref(report, settings) if isinstance(report, str) else None,
    }


def lake_relative(uri: str, settings: Settings | None = None) -> str | None:
    """``uri`` relative to the lake root (``reports/drift/date=…/k.html``); None when it is
    not under the root: the view never shows a host path or a bucket."""
    base = str(lake.root(settings)).rstrip("/") + "/"
    if not uri.startswith(base):
        return None
    rel = uri[len(base) :]
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts):
        return None
    return rel


def report_ref(report: str, settings: Settings | None = None) -> tuple[str, str] | None:
    """``(day, file)`` of an HTML report under the lake's ``reports/drift/``; None otherwise."""
    base = str(_drift_root(settings)).rstrip("/") + "/"
    if not report.startswith(base):
        return None
    parts = report[len(base) :].split("/")
    if len(parts) != 2 or not parts[0].startswith("date="):
        return None
    try:
        return _checked(parts[0][len("date=") :], parts[1])
    except ValueError:
        return None


def drift_report_html(day: str, file: str, settings: Settings | None = None) -> bytes:
    """The bytes of ``reports/drift/date=<day>/<file>``; ValueError for anything else."""
    day, file = _checked(day, file)
    path = _drift_root(settings) / f"date={day}" / file
    if not lake.exists(path):
        raise FileNotFoundError(f"no drift report {day}/{file} in the lake")
    return lake.read_bytes(path)


def _drift_root(settings: Settings | None) -> lake.ObjectStoragePath:
    return tables.REPORTS.path(settings) / "drift"


def _checked(day: str, file: str) -> tuple[str, str]:
    """A real ISO date and one safe ``.html`` file name: nothing else reaches the lake."""
    day = date.fromisoformat(day).isoformat()
    lake.safe_segment(file, what="report file")
    if not file.endswith(".html"):
        raise ValueError(f"not an HTML report: {file!r}")
    return day, file


def top_quarantine(settings: Settings | None = None, top: int = TOP_QUARANTINE) -> list[dict]:
    """The most frequent reason codes of uploads whose latest manifest row is quarantined."""
    state = tables.manifest_state(settings or get_settings())
    quarantined = [r for r in state.values() if r["status"] == tables.QUARANTINED]
    counts = Counter(str(r["reason_code"]) for r in quarantined)
    example = {str(r["reason_code"]): r.get("reason") for r in quarantined}
    return [
        {"reason_code": code, "uploads": n, "example": example[code]}
        for code, n in counts.most_common(top)
    ]


def prompt_detail(name: str, settings: Settings | None = None) -> dict[str, Any]:
    """Everything the view shows for one prompt (UnknownPrompt if it does not exist)."""
    check_prompt(name)
    rows = versions(name)
    return {
        "name": name,
        "versions": rows,
        "evaluations": last_evaluations(rows),
        "slo": slo_series(name, settings),
        "feedback": feedback_by_version(name, settings),
    }


def overview(settings: Settings | None = None) -> dict[str, Any]:
    """The prompts (production and candidate versions) and the pipeline-wide sections."""
    from dresscode.ui.cost import cost_by_day

    prompts = []
    for name in prompt_names():
        rows = versions(name)
        by_alias = {a: r["version"] for r in rows for a in r["aliases"]}
        production = next((r for r in rows if "production" in r["aliases"]), None)
        prompts.append(
            {
                "name": name,
                "registered": [r["version"] for r in rows],
                "production": by_alias.get("production"),
                "candidate": by_alias.get("candidate"),
                "production_gate": production["gate"] if production else None,
            }
        )
    return {
        "prompts": prompts,
        "drift": last_decision(settings),
        "quarantine": top_quarantine(settings),
        "cost": cost_by_day(settings),
    }


def jsonable(obj: Any) -> Any:
    """NaN → None, tuples → lists, so the JSON endpoints emit strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1a202c}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #cbd5e0;padding:.25rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#edf2f7}
.passed{color:#276749;font-weight:600}.failed{color:#c53030;font-weight:600}
.alias{background:#ebf8ff;border-radius:.25rem;padding:0 .3rem;margin-right:.2rem}
.muted{color:#718096}code{font-size:.85rem}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.4g}"
    if isinstance(value, dict | list):
        return _e(json.dumps(value, sort_keys=True))
    return _e(value if value is not None else "–")


def sparkline(values: list[float | None], bound: float, width: int = 160, height: int = 36) -> str:
    """An inline SVG: the daily values as a line with dots, the SLO bound dashed."""
    known = [v for v in values if v is not None]
    low, high = min([*known, bound]), max([*known, bound])
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)

    def y(v: float) -> float:
        return round(height - 3 - (v - low) / span * (height - 6), 1)

    points = [(round(i * step, 1), y(v)) for i, v in enumerate(values) if v is not None]
    line = " ".join(f"{x},{yy}" for x, yy in points)
    dots = "".join(f'<circle cx="{x}" cy="{yy}" r="2" fill="#2b6cb0"/>' for x, yy in points)
    title = ", ".join("–" if v is None else f"{v:.4g}" for v in values)
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)} (bound {bound:g})</title>'
        f'<line x1="0" x2="{width}" y1="{y(bound)}" y2="{y(bound)}" stroke="#e53e3e" '
        f'stroke-dasharray="3,3"/><polyline points="{line}" fill="none" stroke="#2b6cb0" '
        f'stroke-width="1.5"/>{dots}</svg>'
    )


def _link(url: str | None, text: Any) -> str:
    """``text`` escaped, as a link into MLflow's UI when there is one (http(s) only)."""
    if not url or not url.startswith(("http://", "https://")):
        return _e(text)
    return f'<a href="{_e(url)}" rel="noopener">{_e(text)}</a>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _gate(verdict: str | None) -> str:
    if verdict is None:
        return '<span class="muted">not evaluated</span>'
    return f'<span class="{_e(verdict)}">{_e(verdict)}</span>'


def render_prompt(detail: dict[str, Any]) -> str:
    name = detail["name"]
    parts = [f'<h2 id="{_e(name)}">{_e(name)}</h2>', "<h3>Versions</h3>"]
    if detail["versions"]:
        rows = [
            [
                f"v{_e(r['version'])}",
                _link(r.get("prompt_url"), r["mlflow_version"]),
                "".join(f'<span class="alias">{_e(a)}</span>' for a in r["aliases"]),
                _gate(r["gate"]),
                _e(r["gate_at"] or "–"),
            ]
            for r in detail["versions"]
        ]
        parts.append(_table(["git version", "MLflow version", "aliases", "gate", "gate at"], rows))
    else:
        parts.append('<p class="muted">Not registered in MLflow yet.</p>')
    parts.append("<h3>Last evaluations</h3>")
    if detail["evaluations"]:
        rows = [
            [
                f"v{_e(ev['version'])}",
                _gate(ev["gate"]),
                _link(ev.get("run_url"), ev["at"]),
                _metrics(ev["metrics"]),
            ]
            for ev in detail["evaluations"]
        ]
        parts.append(_table(["version", "gate", "at (MLflow run)", "metrics"], rows))
    else:
        parts.append('<p class="muted">No gate evaluation recorded.</p>')
    slo = detail["slo"]
    parts.append(f"<h3>SLO metrics, {_e(slo['days'][0])} .. {_e(slo['days'][-1])}</h3>")
    if slo["metrics"]:
        rows = [
            [
                _e(metric),
                f"{_e(s['slo'])} {_fmt(s['bound'])}",
                sparkline(s["values"], s["bound"]),
                _fmt(next((v for v in reversed(s["values"]) if v is not None), None)),
            ]
            for metric, s in slo["metrics"].items()
        ]
        parts.append(_table(["metric", "SLO", "last 7 days", "latest"], rows))
    else:
        parts.append('<p class="muted">No quality metrics in the last 7 days.</p>')
    if detail.get("feedback"):
        parts.append("<h3>User feedback per version, last 7 days</h3>")
        rows = [
            [
                f"v{_e(f['version'])}",
                f"{_fmt(f['thumbs_down_rate'])} (n={f['thumbs_down_rate_n']})",
                f"{_fmt(f['wore_instead_rate'])} (n={f['wore_instead_rate_n']})",
            ]
            for f in detail["feedback"]
        ]
        parts.append(_table(["version", "thumbs-down rate", "wore-instead rate"], rows))
    return "\n".join(parts)


def _metrics(metrics: dict[str, Any]) -> str:
    items = "".join(
        f"<tr><td><code>{_e(k)}</code></td><td>{_fmt(v)}</td></tr>"
        for k, v in sorted(metrics.items())
    )
    return f"<table>{items}</table>" if items else '<span class="muted">none</span>'


def render_decision(decision: dict[str, Any] | None, report_url: str | None) -> str:
    parts = ["<h2>Last drift decision</h2>"]
    if decision is None:
        return parts[0] + '<p class="muted">No monitoring decision recorded yet.</p>'
    if report_url:
        link = f'<a href="{_e(report_url)}">HTML report</a>'
    elif decision["drift_report"]:
        link = f'<span class="muted">outside reports/drift/: {_e(decision["drift_report"])}</span>'
    elif decision["drift_report_written"]:
        link = '<span class="muted">outside the lake</span>'
    else:
        link = '<span class="muted">none written</span>'
    rows = [
        ["decided at", _e(decision["decided_at"])],
        ["window", f"{_e(decision['window_start'])} .. {_e(decision['window_end'])}"],
        ["branch", f"<strong>{_e(decision['branch'])}</strong>"],
        ["action", _e(decision["action"])],
        ["reasons", "<br>".join(_e(r) for r in decision["reasons"]) or "–"],
        ["drifted columns", _e(", ".join(map(str, decision["drifted_columns"])) or "–")],
        ["drift report", link],
    ]
    parts.append(_table(["", ""], rows))
    return "\n".join(parts)


def render_quarantine(reasons: list[dict[str, Any]]) -> str:
    head = "<h2>Top quarantine reasons</h2>"
    if not reasons:
        return head + '<p class="muted">No upload is quarantined.</p>'
    rows = [[_e(r["reason_code"]), _e(r["uploads"]), _e(r["example"])] for r in reasons]
    return head + _table(["reason code", "uploads", "example"], rows)


def render_page(
    details: list[dict[str, Any]],
    decision: dict | None,
    report_url: str | None,
    quarantine: list[dict[str, Any]],
    cost: CostOverview | None = None,
) -> str:
    from dresscode.ui.cost import render_cost

    nav = " · ".join(f'<a href="#{_e(d["name"])}">{_e(d["name"])}</a>' for d in details)
    body = "\n".join(
        [
            f"<h1>Dresscode</h1><p>{nav}</p>",
            *(render_prompt(d) for d in details),
            render_decision(decision, report_url),
            render_quarantine(quarantine),
            render_cost(cost) if cost is not None else "",
        ]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Dresscode</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


# --- the FastAPI app -------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The plugin's app; every route needs an authenticated Airflow user."""
    from airflow.api_fastapi.core_api.security import requires_authenticated

    from dresscode.registry.prompt_registry import RegistryError

    app = FastAPI(
        title="Dresscode view",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(UnknownPrompt)
    async def _unknown(_request: Request, exc: UnknownPrompt) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(RegistryError)
    async def _registry(_request: Request, exc: RegistryError) -> JSONResponse:
        return JSONResponse({"detail": f"MLflow registry unavailable: {exc}"}, status_code=503)

    def report_url(request: Request, decision: dict | None) -> str | None:
        if not decision or not decision["report_ref"]:
            return None
        day, file = decision["report_ref"]
        return f"{request.scope.get('root_path', '')}/{REPORT_ROUTE}/{day}/{file}"

    from dresscode.ui import similar

    similar.register(app)  # /items/{item_id}/similar: the similar-items panel

    def whole_page(request: Request, details: list[dict[str, Any]]) -> HTMLResponse:
        from dresscode.ui.cost import cost_by_day

        decision = last_decision()
        url = report_url(request, decision)
        content = render_page(details, decision, url, top_quarantine(), cost_by_day())
        return HTMLResponse(content, headers=PAGE_HEADERS)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        return whole_page(request, [prompt_detail(name) for name in prompt_names()])

    @app.get("/prompts/{name}", response_class=HTMLResponse)
    def prompt_page(request: Request, name: str) -> HTMLResponse:
        return whole_page(request, [prompt_detail(name)])

    @app.get("/api/prompts")
    def api_prompts(request: Request) -> JSONResponse:
        data = overview()
        if data["drift"]:
            data["drift"]["report_url"] = report_url(request, data["drift"])
        return JSONResponse(jsonable(data), headers=JSON_HEADERS)

    @app.get("/api/prompts/{name}")
    def api_prompt(name: str) -> JSONResponse:
        return JSONResponse(jsonable(prompt_detail(name)), headers=JSON_HEADERS)

    @app.get(f"/{REPORT_ROUTE}/{{day}}/{{file}}", response_class=HTMLResponse)
    def drift_report(day: str, file: str) -> HTMLResponse:
        try:
            content = drift_report_html(day, file)
        except (ValueError, FileNotFoundError) as exc:
            raise HTTPException(status_code=404, detail=f"no such drift report: {exc}") from exc
        return HTMLResponse(content, headers=REPORT_HEADERS)

    return app
