"""The runs ``make up`` drives through Airflow's REST API: the pipeline, then the monitoring demo."""

from __future__ import annotations

import json

from dresscode.local.airflow_api import TERMINAL_STATES, AirflowAPI
from dresscode.local.stack import dags_in_folder, run_dir, sim_script

# The pipeline in run order; ``up`` triggers those that exist in dags/.
PIPELINE = (
    "wardrobe_ingest",
    "item_embeddings",
    "prompt_release",
    "weather_ingest",
    "style_features",
    "outfit_pregen",
)


def run_pipeline(client: AirflowAPI, timeout_s: float = 1800) -> dict[str, str]:
    """Unpause and trigger each pipeline DAG in order; wait for every run. Returns dag_id -> state."""
    results = {}
    for dag_id in (d for d in PIPELINE if d in dags_in_folder()):
        client.unpause(dag_id)
        run_id = client.trigger(dag_id)
        print(f"• triggered {dag_id} ({run_id})", flush=True)
        # Unpausing may also have started a scheduled run; ours queues behind it
        # (max_active_runs=1), so wait for it first, then ours, then any that came after.
        _wait_for_other_runs(client, dag_id, run_id, timeout_s)
        state = client.wait_for_run(dag_id, run_id, timeout_s)
        _wait_for_other_runs(client, dag_id, run_id, timeout_s)
        results[dag_id] = state
        failed = [
            t
            for t, s in client.task_states(dag_id, run_id).items()
            if s not in {"success", "skipped"}
        ]
        note = f" (not successful: {', '.join(failed)})" if failed else ""
        print(f"  {dag_id}: {state}{note}", flush=True)
    return results


def _wait_for_other_runs(client: AirflowAPI, dag_id: str, run_id: str, timeout_s: float) -> None:
    for run in client.runs(dag_id):
        if run["dag_run_id"] != run_id and run["state"] not in TERMINAL_STATES:
            client.wait_for_run(dag_id, run["dag_run_id"], timeout_s)


# The monitoring demo: a second normal batch (the check must say healthy), then a batch of dark
# photos (it must see the drift, re-evaluate, and promote or page).
DEMO_BATCH = 40  # photos per demo batch: above DRESSCODE_DRIFT_MIN_ROWS, so drift is testable
DEMO_BATCHES = (("normal", None), ("dark", "dark"))


def run_and_report(client: AirflowAPI, dag_id: str, conf: dict | None, timeout_s: float) -> str:
    client.unpause(dag_id)
    run_id = client.trigger(dag_id, conf=conf)
    print(f"• triggered {dag_id} ({run_id})", flush=True)
    state = client.wait_for_run(dag_id, run_id, timeout_s)
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
