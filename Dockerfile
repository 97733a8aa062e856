# syntax=docker/dockerfile:1
# The one Dresscode image: Airflow 3 (every component and the Celery workers), the project's
# code, the vLLM simulator (`dresscode sim`, profile cpu) and the MLflow server, so client and
# server run the same locked versions. Dependencies come from uv.lock only (`--frozen`).
# /opt/airflow/auth is owned by airflow so a fresh named volume mounted there is writable.
FROM python:3.11.13-slim-bookworm

ARG UV_VERSION=0.13.8
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    AIRFLOW_HOME=/opt/airflow \
    DRESSCODE_HOME=/opt/airflow/dresscode \
    PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
    && groupadd --system --gid 50000 airflow \
    && useradd --system --uid 50000 --gid airflow --create-home --home-dir /home/airflow airflow

WORKDIR /opt/dresscode

# Dependencies first (cached while only the code changes), then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY src/ src/
COPY dags/ dags/
COPY plugins/ plugins/
COPY include/ include/
COPY feature_repo/ feature_repo/
# airflow_local_settings.py: the worker preload hook (Airflow puts $AIRFLOW_HOME/config on sys.path).
COPY config/ /opt/airflow/config/
RUN uv sync --frozen --no-dev \
    && mkdir -p "$AIRFLOW_HOME/auth" "$DRESSCODE_HOME" \
    && chown -R airflow:airflow "$AIRFLOW_HOME"

ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/dresscode/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/dresscode/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    DRESSCODE_FEAST_REPO=/opt/dresscode/feature_repo

USER airflow
WORKDIR /opt/airflow
CMD ["airflow", "version"]
