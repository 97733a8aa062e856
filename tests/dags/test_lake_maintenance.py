"""lake_maintenance through dag.test(): each Delta table compacted in its own mapped task, and a
table that cannot be maintained is named by the report while the others still succeed."""

from __future__ import annotations

import os

from dresscode.core import delta, lake

DAY = "2026-03-01"  # a past day: maintenance never compacts the partition ingest writes today


def _states(run) -> dict[tuple[str, int], str]:
    return {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}


def test_the_dag_maps_over_the_tables_and_reports_whatever_happened(load_dag) -> None:
    dag = load_dag("lake_maintenance")
    assert set(dag.task_ids) == {"maintain", "report"}
    assert dag.get_task("report").trigger_rule == "all_done"
    assert dag.get_task("maintain").retries >= 1  # a commit lost to a concurrent writer


def test_a_run_compacts_and_a_broken_table_is_named(load_dag, module_home) -> None:
    rows = [{"item_id": f"i{n}", "user_id": f"u{n % 3}"} for n in range(20)]
    for n, row in enumerate(rows):
        lake.write_parquet("wardrobe_items", DAY, f"p{n}", [row])
    before = lake.read_table("wardrobe_items").sort_values("item_id").reset_index(drop=True)
    run = load_dag("lake_maintenance").test()
    assert run.state == "success", _states(run)
    table = delta.open_table("wardrobe_items")
    # 20 small files of 3 users -> one file per user bucket
    buckets = {delta.user_bucket(r["user_id"]) for r in rows}
    assert table is not None and len(table.file_uris()) == len(buckets) == 3
    after = lake.read_table("wardrobe_items").sort_values("item_id").reset_index(drop=True)
    assert after.equals(before)  # the same rows, the same values

    for n in range(3):
        lake.write_parquet(
            "manifests", DAY, f"m{n}", [{"upload_key": f"u/{n}.jpg", "status": "accepted"}]
        )
    manifests = delta.open_table("manifests")
    assert manifests is not None
    os.remove(manifests.file_uris()[0])  # a file the log references is gone
    dag = load_dag("lake_maintenance")
    for task in dag.tasks:
        task.retries = 0
    run = dag.test()
    states = _states(run)
    assert run.state == "failed"
    index = list(delta.TABLES).index("manifests")
    assert states[("maintain", index)] == "failed"
    others = [state for (task, i), state in states.items() if task == "maintain" and i != index]
    assert others and set(others) == {"success"}
    assert states[("report", -1)] == "failed"
