"""Weather for the stylist, one concern per module.

* :mod:`.derive` — what a city is (:func:`city_id`) and one day's daytime features from an
  hourly forecast (:func:`derive`: mean, high, low, feels-like, rain, wind, tier, season): pure,
  validated, with stable :class:`MissingReason` codes; :func:`tool_answer` and
  :func:`forecast_answer` make the stylist's ``get_weather`` answer from them.
* :mod:`.provider` — the Open-Meteo-shaped HTTP client: retries, backoff, a circuit breaker.
* :mod:`.cache` — the per-city cache in the lake, and :func:`fetch_weather`, the batch that
  reads through it (cache, else provider, else a stale cache entry, else a reason).
* :mod:`.hook` — the ``dresscode_weather`` Airflow connection type; every provider client is
  made by :class:`~dresscode.features.weather.hook.WeatherProviderHook` (not re-exported here:
  it imports Airflow).

The ``weather_ingest`` task bodies are in :mod:`dresscode.features.tasks`.
"""

from dresscode.features.weather.cache import (
    CACHE_VERSION,
    WeatherBatch,
    cache_path,
    fetch_weather,
    weather_for,
)
from dresscode.features.weather.derive import (
    FEATURE_KEYS,
    CityWeather,
    InvalidCity,
    Missing,
    MissingReason,
    WeatherError,
    city_id,
    clean_city_name,
    derive,
    forecast_answer,
    forecast_features,
    season,
    temperature_tier,
    tool_answer,
)
from dresscode.features.weather.provider import (
    CIRCUIT_BREAK_AFTER,
    RETRYABLE,
    Place,
    RetryPolicy,
    WeatherProvider,
)

__all__ = [
    "CACHE_VERSION",
    "CIRCUIT_BREAK_AFTER",
    "FEATURE_KEYS",
    "RETRYABLE",
    "CityWeather",
    "InvalidCity",
    "Missing",
    "MissingReason",
    "Place",
    "RetryPolicy",
    "WeatherBatch",
    "WeatherError",
    "WeatherProvider",
    "cache_path",
    "city_id",
    "clean_city_name",
    "derive",
    "fetch_weather",
    "forecast_answer",
    "forecast_features",
    "season",
    "temperature_tier",
    "tool_answer",
    "weather_for",
]
