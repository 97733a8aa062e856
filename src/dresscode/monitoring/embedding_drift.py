"""Embedding drift: are this window's item descriptions about the same garments as before?

The item descriptions' vectors (``item_embeddings``, made by the item_embeddings DAG) of the
current window against the reference window, through Evidently's embeddings drift
(``EmbeddingsDriftMetric``, the model-based method: a classifier tries to tell the two windows'
vectors apart; ROC AUC over the threshold means they differ). Measured with the local model on synthetic
wardrobes (``tests/unit/monitoring/test_embedding_drift.py``): two windows of the same kind of
wardrobe score 0.519, a window of only footwear, bags and accessories 0.734; the threshold
0.55 sits between. A new kind of garment — users
suddenly photographing swimwear in a wardrobe of coats — moves the descriptions before it
moves any SLO. Only vectors of one embedding model are compared (a model change is not drift).

Pure: frames in, a typed result out; the reads are :func:`window_vectors`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from dresscode.core.config import Settings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MOVED = "item_descriptions"  # its name among the drifted columns of a drift verdict
MIN_ROWS = 50  # per window: fewer vectors say nothing either way
DEFAULT_THRESHOLD = 0.55  # ROC AUC of the model-based method: 0.5 = indistinguishable


@dataclass(frozen=True)
class EmbeddingDrift:
    drifted: bool | None  # None: not enough vectors in a window to tell
    score: float | None  # the method's ROC AUC
    threshold: float
    model: str
    reference_rows: int
    current_rows: int
    reason: str  # one sentence for the decision record


def window_vectors(window: tuple[datetime, datetime], model: str, settings: Settings) -> np.ndarray:
    """The vectors of one embedding model embedded in [start, end): the window's day
    partitions are read (pushed down), then rows are kept by their ``embedded_at``."""
    import numpy as np

    from dresscode.core import lake

    start, end = (_stamp(t) for t in window)
    frame = lake.read_table(
        "item_embeddings",
        settings,
        days=window_days(window),
        columns=["item_id", "vector", "model", "embedded_at"],
        filters=[("model", "=", model)],
    )
    if not frame.empty:
        stamps = frame["embedded_at"].astype(str)
        frame = frame[(stamps >= start) & (stamps < end)]
    if frame.empty:
        return np.zeros((0, settings.embedding_dimension), dtype=np.float32)
    frame = frame.sort_values("embedded_at").drop_duplicates("item_id", keep="last")
    return np.stack([np.asarray(v, dtype=np.float32) for v in frame["vector"]])


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="milliseconds")


def window_days(window: tuple[datetime, datetime]) -> list[str]:
    """The ``date`` partitions a [start, end) window touches."""
    start, end = (_utc(t) for t in window)
    last = (end - timedelta(microseconds=1)).date()
    return days_between(start.date(), last + timedelta(days=1))


def days_between(start: date, end: date) -> list[str]:
    """The ``date`` partitions of [start, end) (the lake's days)."""
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days)]


def compare_windows(
    reference: tuple[datetime, datetime],
    current: tuple[datetime, datetime],
    settings: Settings,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> EmbeddingDrift:
    """Embedding drift of the items embedded in ``current`` against those embedded in
    ``reference`` (each [start, end), aware), with the model most current vectors use.

    What ``model_monitoring``'s ``detect_drift`` calls beside the photo drift; reads only
    the windows' day partitions of ``item_embeddings``.
    """
    from dresscode.core import lake

    models = lake.read_table(
        "item_embeddings", settings, days=window_days(current), columns=["model"]
    )
    if models.empty:
        return EmbeddingDrift(
            None, None, threshold, "", 0, 0, "no item vectors in the current window"
        )
    model = str(models["model"].value_counts().idxmax())
    return embedding_drift(
        window_vectors(reference, model, settings),
        window_vectors(current, model, settings),
        model=model,
        threshold=threshold,
    )


def embedding_drift(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    model: str,
    threshold: float = DEFAULT_THRESHOLD,
) -> EmbeddingDrift:
    """Evidently's model-based embeddings drift between two windows of vectors."""
    if min(len(reference), len(current)) < MIN_ROWS:
        return EmbeddingDrift(
            None,
            None,
            threshold,
            model,
            len(reference),
            len(current),
            f"not enough item vectors to compare ({len(reference)} reference, {len(current)} "
            f"current; {MIN_ROWS} needed in each)",
        )
    score = _evidently_score(_frame(reference), _frame(current), threshold)
    drifted = score > threshold
    verb = "differ from" if drifted else "look like"
    return EmbeddingDrift(
        drifted,
        round(score, 4),
        threshold,
        model,
        len(reference),
        len(current),
        f"this window's item descriptions {verb} the reference's (a classifier tells them apart "
        f"with ROC AUC {score:.3f}, threshold {threshold})",
    )


def _frame(vectors: np.ndarray) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(vectors, columns=[f"e{i}" for i in range(vectors.shape[1])])


def _evidently_score(ref: pd.DataFrame, cur: pd.DataFrame, threshold: float) -> float:
    """The model-based method's ROC AUC (Evidently seeds its split and classifier: repeatable)."""
    from evidently.legacy.metrics import EmbeddingsDriftMetric
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model as by_model
    from evidently.legacy.pipeline.column_mapping import ColumnMapping
    from evidently.legacy.report import Report

    mapping = ColumnMapping(embeddings={"description": list(ref.columns)})
    metric = EmbeddingsDriftMetric(
        "description", drift_method=by_model(threshold=threshold, bootstrap=False)
    )
    report = Report(metrics=[metric])
    report.run(reference_data=ref, current_data=cur, column_mapping=mapping)
    result = report.as_dict()["metrics"][0]["result"]
    return float(result["drift_score"])
