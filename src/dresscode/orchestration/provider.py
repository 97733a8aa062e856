"""This package as an Airflow provider: the ``dresscode_llm`` and ``dresscode_weather`` connection types.

``pyproject.toml`` registers :func:`get_provider_info` under the ``apache_airflow_provider``
entry point. Airflow's ProvidersManager calls it in every component, so it imports only the
stdlib-only ``dresscode.core.connections``, where the types and their forms are declared.
Airflow 3.3 builds the connection form from their ``conn-fields`` and ``ui-field-behaviour``
without importing the hooks; a hook is imported only to test or use a connection, so a hook
that fails to import costs its own type the Test button, never the other type's form.
"""

from __future__ import annotations

import copy
from typing import Any

from dresscode.core.connections import CONNECTION_TYPES

PACKAGE_NAME = "dresscode-pipelines"  # must equal the distribution name in pyproject.toml


def get_provider_info() -> dict[str, Any]:
    """The provider info Airflow reads (``airflow/provider_info.schema.json``)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "Dresscode",
        "description": "Dresscode Pipelines: the model endpoint and weather provider connection types.",
        # A copy: Airflow edits what it is given (it prefixes the placeholders' names).
        "connection-types": copy.deepcopy(list(CONNECTION_TYPES)),
    }
