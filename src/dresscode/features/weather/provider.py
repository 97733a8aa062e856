"""The forecast provider's HTTP client: Open-Meteo's API shape, retries, a circuit breaker.

The provider speaks Open-Meteo's API (``/v1/search`` geocoding, ``/v1/forecast`` hourly
forecasts); the ``weather_api`` connection (type ``dresscode_weather``, see :mod:`.hook`) points
it at the public API, a paid plan, a mirror or the local stub (``dresscode.sim.weather``).
Clients come from :meth:`WeatherProviderHook.get_conn`, never from here directly.

Retries: timeouts, connection errors, 429 (``Retry-After`` honoured, capped) and 5xx, with
exponential backoff and full jitter; other 4xx and bad payloads are not retried (asking again
gets the same answer). After ``CIRCUIT_BREAK_AFTER`` cities in a row fail that way, the provider
is considered down for the rest of the batch, so an outage costs seconds, not hours. API keys
never reach the logs (httpx logs request URLs; ours carry ``apikey=…``).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from dresscode.core.connections import WeatherEndpoint
from dresscode.core.http import retry_after_seconds
from dresscode.features.weather.derive import (
    HOURLY_VARIABLES,
    MissingReason,
    WeatherError,
    forecast_features,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

CIRCUIT_BREAK_AFTER = 3  # cities in a row failing on a retryable error -> provider is down

RETRYABLE = frozenset(
    {
        MissingReason.TIMEOUT,
        MissingReason.CONNECTION_ERROR,
        MissingReason.RATE_LIMITED,
        MissingReason.SERVER_ERROR,
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """How provider requests are retried. ``max_attempts=None``: ``settings.weather_max_attempts``.

    Full jitter: the n-th retry waits uniform(0, min(backoff_max_s, backoff_base_s * 2^(n-1))).
    A ``Retry-After`` is a floor on that wait, itself capped at ``retry_after_cap_s`` so a
    provider cannot park the batch. ``sleep`` and ``rng`` are injectable for tests.
    """

    max_attempts: int | None = None
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None

    def delay(self, retry: int, retry_after_s: float | None) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1))
        delay = (self.rng or random).uniform(0.0, ceiling) if ceiling > 0 else 0.0
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.retry_after_cap_s))
        return delay


@dataclass(frozen=True)
class Place:
    """A geocoded city, cached forever."""

    name: str
    latitude: float
    longitude: float
    timezone: str | None
    country: str | None
    country_code: str | None


def _status_error(response: httpx.Response, redact: Callable[[str], str]) -> WeatherError:
    """Map a non-200 answer to a reason; Open-Meteo explains errors in ``{"reason": …}``."""
    status = response.status_code
    try:
        detail = response.json().get("reason")
    except (ValueError, AttributeError):
        detail = None
    said = f": {redact(str(detail)[:200]).rstrip('.')}" if detail else ""
    if status == 429:
        return WeatherError(
            MissingReason.RATE_LIMITED,
            f"The provider rate-limited us (HTTP 429){said}.",
            retry_after_s=retry_after_seconds(response.headers.get("retry-after")),
        )
    if status >= 500:
        return WeatherError(
            MissingReason.SERVER_ERROR, f"The provider failed (HTTP {status}){said}."
        )
    if status in (401, 403):
        return WeatherError(
            MissingReason.UNAUTHORIZED,
            f"The provider refused our API key (HTTP {status}); check the weather_api connection.",
        )
    return WeatherError(
        MissingReason.CLIENT_ERROR, f"The provider rejected the request (HTTP {status}){said}."
    )


class _RedactApiKey(logging.Filter):
    """httpx logs every request URL at INFO; ours carry ``apikey=…``. Keys never reach logs."""

    _KEY = re.compile(r"(apikey=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "apikey=" in message.lower():
            record.msg, record.args = self._KEY.sub(r"\1***", message), None
        return True


_REDACTOR = _RedactApiKey()


def _install_redactor() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


class WeatherProvider:
    """HTTP to the provider: retries, counters, a circuit breaker per endpoint.

    One per batch (the breaker and the counters are the batch's); ``client`` is an
    ``httpx.Client`` the caller owns and closes.
    """

    def __init__(
        self,
        endpoint: WeatherEndpoint,
        client: httpx.Client,
        retry: RetryPolicy,
        attempts: int,
        *,
        owns_client: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.client = client
        self.owns_client = owns_client
        self.retry = retry
        self.max_attempts = attempts
        self.calls = Counter[str]()
        self.failures_in_a_row = Counter[str]()
        self.last_failure: dict[str, WeatherError] = {}
        if endpoint.api_key:
            _install_redactor()

    def close(self) -> None:
        """Close the HTTP client if this provider made it (a shared pool stays open)."""
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> WeatherProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _redact(self, text: str) -> str:
        key = self.endpoint.api_key
        return text.replace(key, "***") if key else text

    def get_json(self, kind: str, url: str, params: dict[str, Any], what: str) -> Any:
        """GET with retries; the parsed JSON body, or WeatherError. ``kind``: forecast|search."""
        if self.failures_in_a_row[kind] >= CIRCUIT_BREAK_AFTER:
            last = self.last_failure[kind]
            raise WeatherError(
                MissingReason.PROVIDER_UNAVAILABLE,
                f"Not asked: the {kind} endpoint failed for {CIRCUIT_BREAK_AFTER} cities in a row "
                f"this batch (last: {last.reason}).",
            )
        if self.endpoint.api_key:
            params = {**params, "apikey": self.endpoint.api_key}
        attempt = 0
        while True:
            attempt += 1
            try:
                body = self._attempt(kind, url, params)
            except WeatherError as err:
                if err.reason not in RETRYABLE:
                    self.failures_in_a_row[kind] = 0  # it answered: up, if unhelpful
                    raise
                if attempt >= self.max_attempts:
                    self.failures_in_a_row[kind] += 1
                    self.last_failure[kind] = err
                    tries = f"{attempt} attempts" if attempt > 1 else "1 attempt"
                    raise WeatherError(
                        err.reason, f"{err.message.rstrip('.')}; gave up after {tries}."
                    ) from None
                delay = self.retry.delay(attempt, err.retry_after_s)
                log.info(
                    "weather %s for %s attempt %d/%d failed: %s — retrying in %.2fs",
                    kind,
                    what,
                    attempt,
                    self.max_attempts,
                    err.reason,
                    delay,
                )
                self.retry.sleep(delay)
                continue
            self.failures_in_a_row[kind] = 0
            return body

    def _attempt(self, kind: str, url: str, params: dict[str, Any]) -> Any:
        import httpx

        self.calls[kind] += 1
        try:
            response = self.client.get(url, params=params, timeout=self.endpoint.timeout_s)
        except httpx.TimeoutException:
            raise WeatherError(
                MissingReason.TIMEOUT,
                f"The provider did not answer within {self.endpoint.timeout_s:g}s.",
            ) from None
        except httpx.TransportError as exc:
            raise WeatherError(
                MissingReason.CONNECTION_ERROR,
                self._redact(f"Could not reach the provider: {type(exc).__name__}: {exc}"),
            ) from None
        if response.status_code != 200:
            raise _status_error(response, self._redact)
        try:
            return response.json()
        except ValueError:
            kind_of = response.headers.get("content-type", "?").split(";")[0]
            raise WeatherError(
                MissingReason.MALFORMED, f"The provider's answer is not JSON ({kind_of})."
            ) from None

    def geocode(self, name: str) -> Place:
        body = self.get_json(
            "search",
            f"{self.endpoint.geocoding_url}/search",
            {"name": name, "count": 1, "language": "en", "format": "json"},
            name,
        )
        if not isinstance(body, dict):
            raise WeatherError(MissingReason.MALFORMED, "The geocoder's answer is not an object.")
        results = body.get("results") or []
        if not results:
            raise WeatherError(
                MissingReason.UNKNOWN_CITY, f"The geocoder does not know a place called {name!r}."
            )
        first = results[0]
        try:
            latitude, longitude = float(first["latitude"]), float(first["longitude"])
        except (KeyError, TypeError, ValueError):
            raise WeatherError(
                MissingReason.MALFORMED, f"The geocoder's result for {name!r} has no coordinates."
            ) from None
        if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
            raise WeatherError(
                MissingReason.ABSURD_VALUE,
                f"The geocoder placed {name!r} at impossible coordinates {latitude}, {longitude}.",
            )

        def text(key: str) -> str | None:
            value = first.get(key)
            return str(value) if value else None

        return Place(
            text("name") or name,
            latitude,
            longitude,
            text("timezone"),
            text("country"),
            text("country_code"),
        )

    def check(self) -> None:
        """One cheap forecast request (one variable, one day, one attempt); WeatherError if bad."""
        body = self._attempt(
            "forecast",
            f"{self.endpoint.base_url}/forecast",
            {
                "latitude": 0.0,
                "longitude": 0.0,
                "hourly": HOURLY_VARIABLES[0],
                "timezone": "GMT",
                "forecast_days": 1,
                **({"apikey": self.endpoint.api_key} if self.endpoint.api_key else {}),
            },
        )
        if not isinstance(body, dict) or not isinstance(body.get("hourly"), dict):
            raise WeatherError(
                MissingReason.MALFORMED, "The provider answered, but not with a forecast."
            )

    def forecast(self, place: Place, day: date, what: str) -> dict[str, Any]:
        body = self.get_json(
            "forecast",
            f"{self.endpoint.base_url}/forecast",
            {
                "latitude": place.latitude,
                "longitude": place.longitude,
                "hourly": ",".join(HOURLY_VARIABLES),
                "timezone": place.timezone or "auto",
                "start_date": day.isoformat(),
                "end_date": day.isoformat(),
            },
            what,
        )
        return forecast_features(body, day=day, latitude=place.latitude)
