"""The MLflow connection of the registry: one client per call, MLflow failures as sentences.

:func:`connect` hands out an ``MlflowClient`` for the configured tracking URI and turns any
MLflow failure into :class:`RegistryError` (an unreachable server says so). MLflow is imported
inside functions only: DAG files import the registry and must stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class RegistryError(RuntimeError):
    """The registry cannot do what was asked; the message names the prompt and version."""


class AliasNotSet(RegistryError):
    """The prompt has no such alias (or is not registered at all): nothing was ever promoted."""


def tracking_uri() -> str:
    from dresscode.core.config import get_settings

    return get_settings().mlflow_tracking_uri


def ui_links() -> tuple[str, str] | None:
    """MLflow UI link templates ``(prompt version, run)`` when the tracking URI is a server
    (the local stack's, or production's); a SQLite store has no UI to link to."""
    uri = tracking_uri().rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri}/#/prompts/{{name}}?promptVersion={{version}}", f"{uri}/#/runs/{{run_id}}"


@contextmanager
def connect(name: str) -> Iterator[MlflowClient]:
    """A client for the configured MLflow; MLflow failures become RegistryError."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    except RegistryError:
        raise
    except MlflowException as exc:
        if is_unreachable(exc):
            raise RegistryError(
                f"MLflow at {uri} is unreachable: {first_line(exc)} (prompt {name})."
            ) from exc
        raise RegistryError(f"MLflow at {uri} failed for prompt {name}: {first_line(exc)}") from exc


def is_not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", None) in _NOT_FOUND_CODES and not is_unreachable(exc)


def is_unreachable(exc: BaseException) -> bool:
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.RequestException):
            return True
        seen = seen.__cause__ or seen.__context__
    return "API request to" in str(exc) and "failed with exception" in str(exc)


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
