"""The runs ``make up`` drives through Airflow's REST API: the pipeline, then the monitoring demo."""

from __future__ import annotations

import json
import time

from dresscode.local.airflow_api import AirflowAPI
from dresscode.local.stack import dags_in_folder, run_dir, sim_script

# The pipeline as stages: the DAGs of a stage need only what earlier stages wrote, so they run
# at once (the LocalExecutor runs 8 tasks in parallel); ``up`` runs those that exist in dags/.
STAGES = (
    ("wardrobe_ingest", "weather_ingest", "prompt_release"),
    ("item_embeddings", "style_features"),
    ("outfit_pregen",),
)
PIPELINE = tuple(dag_id for stage in STAGES for dag_id in stage)


def start_run(client: AirflowAPI, dag_id: str, conf: dict | None = None) -> str:
    """Start a run of ``dag_id`` now and unpause it; returns its run id.

    Unpausing a scheduled DAG makes the scheduler run its latest interval at once, even with
    ``catchup=False``: before, ``make up`` ran that work twice (the issue's prompt_release ran a
    122 s golden evaluation nobody asked for, and ours queued behind it). On a paused DAG our
    run takes the logical date of that scheduled run, so the scheduler finds it already there
    and moves on to the next interval (Airflow keys scheduled runs on it); its data interval
    is the 24 hours before now, as for any run started by hand.
    """
    from datetime import UTC, datetime, timedelta

    info = client.dag(dag_id)
    logical = info.get("next_dagrun_logical_date") if info.get("is_paused") else None
    if logical:
        now = datetime.now(UTC)
        window = ((now - timedelta(days=1)).isoformat(), now.isoformat())
        run_id = client.trigger(dag_id, conf, logical_date=logical, data_interval=window)
    else:
        run_id = client.trigger(dag_id, conf)
    client.unpause(dag_id)
    print(f"• triggered {dag_id} ({run_id})", flush=True)
    return run_id


def report(client: AirflowAPI, dag_id: str, run_id: str, state: str) -> None:
    tasks = client.task_states(dag_id, run_id)
    failed = [t for t, s in tasks.items() if s not in {"success", "skipped"}]
    taken = [
        t
        for t in ("healthy", "quality_degraded", "drifted", "promote", "page")
        if tasks.get(t) == "success"
    ]
    note = f" (not successful: {', '.join(failed)})" if failed else ""
    branch = f", took {' -> '.join(taken)}" if taken else ""
    print(f"  {dag_id}: {state}{branch}{note}", flush=True)


def run_pipeline(client: AirflowAPI, timeout_s: float = 1800) -> dict[str, str]:
    """Run the pipeline's stages in order, the DAGs of a stage at once; wait for every run.
    Returns dag_id -> state."""
    present = set(dags_in_folder())
    results = {}
    for stage in STAGES:
        began = time.monotonic()
        started = {dag_id: start_run(client, dag_id) for dag_id in stage if dag_id in present}
        for dag_id, run_id in started.items():
            results[dag_id] = client.wait_for_run(dag_id, run_id, timeout_s)
            report(client, dag_id, run_id, results[dag_id])
        print(f"  ({', '.join(started)}: {time.monotonic() - began:.0f} s)", flush=True)
    return results


# The monitoring demo: a second normal batch (the check must say healthy), then a batch of dark
# photos (it must see the drift, re-evaluate, and promote or page).
DEMO_BATCH = 40  # photos per demo batch: above DRESSCODE_DRIFT_MIN_ROWS, so drift is testable
DEMO_BATCHES = (("normal", None), ("dark", "dark"))


def run_and_report(client: AirflowAPI, dag_id: str, conf: dict | None, timeout_s: float) -> str:
    run_id = start_run(client, dag_id, conf)
    state = client.wait_for_run(dag_id, run_id, timeout_s)
    report(client, dag_id, run_id, state)
    return state


def run_monitoring_demo(
    client: AirflowAPI, first_seed: int, timeout_s: float = 1800
) -> dict[str, str]:
    """Ingest each demo batch, then run model_monitoring over exactly that batch's window.

    The window of a batch is recorded the first time it is ingested, so running ``up`` again
    checks the same photos and reaches the same decision.
    """
    from datetime import UTC, datetime

    from dresscode.local import seed

    windows_file = run_dir() / "demo-windows.json"
    windows = json.loads(windows_file.read_text()) if windows_file.exists() else {}
    results = {}
    for i, (name, shift) in enumerate(DEMO_BATCHES):
        # Before seeding: a scheduled wardrobe_ingest may pick the batch up at once.
        start = datetime.now(UTC).isoformat()
        written = seed.seed(
            n_photos=DEMO_BATCH,
            script_path=sim_script(),
            start=first_seed + i * DEMO_BATCH,
            bad_files=False,
            shift=shift,
        )
        print(f"• seeded the {name} demo batch: {written.new} new uploads", flush=True)
        if written.new or name not in windows:
            results[f"wardrobe_ingest ({name} batch)"] = run_and_report(
                client, "wardrobe_ingest", None, timeout_s
            )
            windows[name] = {"window_start": start, "window_end": datetime.now(UTC).isoformat()}
            windows_file.parent.mkdir(parents=True, exist_ok=True)
            windows_file.write_text(json.dumps(windows, indent=2))
        results[f"model_monitoring ({name} batch)"] = run_and_report(
            client, "model_monitoring", windows[name], timeout_s
        )
    return results
