"""Release history in MLflow: every move of ``production`` is a run in ``dresscode-releases``.

:func:`audit` records a promotion or a rollback (who, when, why, from, to) next to the
evaluations, searchable by prompt; :func:`use_experiment` selects an experiment so that, with a
local (SQLite) store, artifacts live under ``DRESSCODE_HOME``. Both are re-exported by
``prompt_registry``, their historical home.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dresscode.registry.prompt_registry import Promotion

log = logging.getLogger(__name__)

AUDIT_EXPERIMENT = "dresscode-releases"


def use_experiment(mlflow: Any, name: str, settings: Any) -> None:
    """Select the experiment; with a local (SQLite) store its artifacts live under
    DRESSCODE_HOME, not in ./mlruns of whatever directory the command ran from."""
    if mlflow.get_experiment_by_name(name) is None and settings.mlflow_tracking_uri.startswith(
        "sqlite:"
    ):
        mlflow.create_experiment(
            name, artifact_location=(settings.home / "mlflow-artifacts").as_uri()
        )
    mlflow.set_experiment(name)


def audit(promotion: Promotion) -> str:
    """Record an alias move as an MLflow run (who, when, why, from, to); returns the run id."""
    import mlflow

    from dresscode.core.config import get_settings

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    use_experiment(mlflow, AUDIT_EXPERIMENT, settings)
    was = f"v{promotion.from_version}" if promotion.from_version is not None else "none"
    with mlflow.start_run(
        run_name=f"{promotion.action} {promotion.name} {was} -> v{promotion.to_version}"
    ) as run:
        mlflow.set_tags(
            {
                "dresscode.prompt": promotion.name,
                "dresscode.action": promotion.action,
                "dresscode.from_version": was,
                "dresscode.to_version": f"v{promotion.to_version}",
                "dresscode.actor": promotion.actor,
                "dresscode.reason": promotion.reason,
                "dresscode.at": promotion.at,
            }
        )
        mlflow.log_dict(asdict(promotion), "promotion.json")
    log.info("audit record %s: %s", run.info.run_id, promotion.describe())
    return run.info.run_id
