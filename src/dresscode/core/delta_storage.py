"""delta-rs storage options for an S3 lake, from the Airflow AWS connection the rest of the lake
uses (:mod:`dresscode.core.delta`)."""

from __future__ import annotations

from functools import cache


@cache
def s3_options(conn_id: str) -> dict[str, str]:
    """delta-rs storage options from an Airflow AWS connection (keys, region, endpoint).

    Resolved once per process, like the lake's own S3 filesystem (``ObjectStoragePath``
    caches one per connection): a task does not look the connection up on every commit.
    """
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    config = hook.conn_config
    options = {
        "conditional_put": "etag",  # S3 (and S3-compatible stores): two writers never clash
        # Like the lake's boto3 clients: a few quick retries, not object_store's 10 over 3
        # minutes, so an S3 outage fails the try in seconds and Airflow's retries take over.
        "max_retries": "4",
        "retry_timeout": "30s",
    }
    key, secret, token = (
        config.aws_access_key_id,
        config.aws_secret_access_key,
        config.aws_session_token,
    )
    if not key:  # no keys in the connection: the environment's chain (role, profile, env)
        session = hook.get_session()
        found = session.get_credentials()
        if found is not None:
            frozen = found.get_frozen_credentials()
            key, secret, token = frozen.access_key, frozen.secret_key, frozen.token
    if key and secret:
        options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"] = key, secret
    if token:
        options["AWS_SESSION_TOKEN"] = token
    region = hook.conn_region_name
    if region:
        options["AWS_REGION"] = region
    endpoint = config.get_service_endpoint_url(service_name="s3")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options
