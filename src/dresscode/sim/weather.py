"""A stub of the Open-Meteo weather API, for local runs, demos and tests.

STUB — a test double for a real public API (https://open-meteo.com), not a forecast. It is
meant to be bound to loopback only (``dresscode.sim.testing.running_weather_stub``, or
mounted under ``/weather`` by the vLLM simulator). It answers in Open-Meteo's shape:

* ``GET /v1/search?name=…&count=…`` — geocoding over a fixed table of world cities (both
  hemispheres, hot, cold and rainy ones). An unknown name answers
  ``{"generationtime_ms": …}`` without ``results``, as Open-Meteo does.
* ``GET /v1/forecast?latitude=…&longitude=…&hourly=…&timezone=…&start_date=…&end_date=…`` —
  hourly ``time`` (local ``YYYY-MM-DDTHH:MM``) plus the requested variables. Values are
  deterministic per ``(seed, latitude, longitude, date)`` and plausible for the city's
  climate and the month; coordinates outside the table get a climate from their latitude.

Test and demo controls (not part of Open-Meteo):

* ``POST /_faults`` ``{"<city name or 'lat,lon' or '*'>": "<fault>" | {"fault": …,
  "times": n, "retry_after": s, "seconds": s}}`` — the next forecast requests for that city
  misbehave (``times`` of them, else until reset); see ``FAULTS``.
* ``POST /_reset`` clears faults and counters; ``GET /_stats`` counts requests per city.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from dresscode.sim import control

# fault -> what it does. Transport faults answer instead of the forecast; data faults change it.
FAULTS: dict[str, str] = {
    "server_error": "HTTP 500 with Open-Meteo's error body",
    "rate_limited": "HTTP 429 with Retry-After (default 0 s)",
    "bad_request": "HTTP 400 with Open-Meteo's error body",
    "timeout": "sleep `seconds` (default: the app's timeout_fault_s) before answering",
    "malformed": "HTTP 200 with an HTML body instead of JSON",
    "missing_fields": "apparent_temperature dropped from hourly",
    "nan": "temperature_2m is null at 13:00 and NaN at 14:00 local",
    "absurd_hot": "temperature_2m is 70 °C at 14:00 local",
    "absurd_cold": "temperature_2m is -90 °C at 14:00 local",
    "blizzard": "-15 °C, feels -25 °C, snow, wind 60 km/h, precipitation 90 %",
    "heatwave": "38 °C, feels 41 °C, dry, light wind",
    "downpour": "precipitation probability 95 %, heavy rain",
}
TRANSPORT_FAULTS = frozenset(
    {"server_error", "rate_limited", "bad_request", "timeout", "malformed"}
)
VARIABLES = (
    "temperature_2m",
    "apparent_temperature",
    "precipitation_probability",
    "precipitation",
    "snowfall",
    "wind_speed_10m",
    "weather_code",
    "relative_humidity_2m",
)
UNITS = {
    "time": "iso8601",
    "temperature_2m": "°C",
    "apparent_temperature": "°C",
    "precipitation_probability": "%",
    "precipitation": "mm",
    "snowfall": "cm",
    "wind_speed_10m": "km/h",
    "weather_code": "wmo code",
    "relative_humidity_2m": "%",
}
MAX_FORECAST_DAYS = 16
NEAR_DEG = 0.1  # a forecast request this close to a table city is that city


@dataclass(frozen=True)
class City:
    """One city of the geocoding table with a rough climate (monthly means interpolate Jan↔Jul)."""

    id: int
    name: str
    country: str
    country_code: str
    admin1: str
    latitude: float
    longitude: float
    elevation: float
    timezone: str
    population: int
    jan_c: float  # mean air temperature in January
    jul_c: float  # mean air temperature in July
    diurnal_c: float  # day-night swing
    wet_jan: float  # chance of a rainy day in January, 0..1
    wet_jul: float
    wind_kph: float  # typical wind speed

    @property
    def key(self) -> str:
        return fold(self.name)


# fmt: off
CITIES: tuple[City, ...] = (
    # id, name, country, code, admin1, lat, lon, elevation, timezone, population,
    # jan_c, jul_c, diurnal_c, wet_jan, wet_jul, wind_kph
    City(2950159, "Berlin", "Germany", "DE", "Land Berlin", 52.52437, 13.41053, 74,
         "Europe/Berlin", 3426354, 0.6, 19.8, 8, 0.35, 0.35, 12),
    City(2643743, "London", "United Kingdom", "GB", "England", 51.50853, -0.12574, 25,
         "Europe/London", 7556900, 5.2, 18.7, 7, 0.55, 0.45, 15),
    City(2988507, "Paris", "France", "FR", "Île-de-France", 48.85341, 2.3488, 42,
         "Europe/Paris", 2138551, 5.0, 20.5, 8, 0.45, 0.35, 12),
    City(3117735, "Madrid", "Spain", "ES", "Madrid", 40.4165, -3.70256, 665,
         "Europe/Madrid", 3255944, 6.3, 25.6, 12, 0.25, 0.05, 10),
    City(5128581, "New York", "United States", "US", "New York", 40.71427, -74.00597, 10,
         "America/New_York", 8804190, 0.5, 25.0, 8, 0.35, 0.35, 16),
    City(5809844, "Seattle", "United States", "US", "Washington", 47.60621, -122.33207, 56,
         "America/Los_Angeles", 737015, 5.5, 19.0, 7, 0.75, 0.2, 11),
    City(3161732, "Bergen", "Norway", "NO", "Vestland", 60.39299, 5.32415, 12,
         "Europe/Oslo", 285911, 1.5, 15.0, 5, 0.85, 0.65, 18),
    City(3143244, "Oslo", "Norway", "NO", "Oslo", 59.91273, 10.74609, 23,
         "Europe/Oslo", 580000, -4.3, 16.4, 6, 0.35, 0.45, 10),
    City(3413829, "Reykjavík", "Iceland", "IS", "Capital Region", 64.13548, -21.89541, 30,
         "Atlantic/Reykjavik", 118918, -0.5, 11.2, 4, 0.6, 0.45, 24),
    City(2013159, "Yakutsk", "Russia", "RU", "Sakha", 62.03389, 129.73306, 100,
         "Asia/Yakutsk", 235600, -38.6, 19.5, 9, 0.15, 0.35, 8),
    City(292223, "Dubai", "United Arab Emirates", "AE", "Dubai", 25.07725, 55.30927, 5,
         "Asia/Dubai", 3790000, 19.0, 35.5, 9, 0.05, 0.01, 14),
    City(1880252, "Singapore", "Singapore", "SG", "Singapore", 1.28967, 103.85007, 15,
         "Asia/Singapore", 5638700, 26.5, 27.9, 6, 0.65, 0.55, 9),
    City(1850147, "Tokyo", "Japan", "JP", "Tokyo", 35.6895, 139.69171, 44,
         "Asia/Tokyo", 9733276, 5.2, 25.0, 8, 0.2, 0.45, 11),
    City(1275339, "Mumbai", "India", "IN", "Maharashtra", 19.07283, 72.88261, 14,
         "Asia/Kolkata", 12691836, 24.0, 27.5, 7, 0.02, 0.95, 13),
    City(2147714, "Sydney", "Australia", "AU", "New South Wales", -33.86785, 151.20732, 58,
         "Australia/Sydney", 4627345, 23.0, 12.5, 8, 0.35, 0.3, 15),
    City(3448439, "São Paulo", "Brazil", "BR", "São Paulo", -23.5475, -46.63611, 769,
         "America/Sao_Paulo", 10021295, 23.0, 16.5, 9, 0.7, 0.2, 10),
    City(3369157, "Cape Town", "South Africa", "ZA", "Western Cape", -33.92584, 18.42322, 25,
         "Africa/Johannesburg", 3433441, 21.5, 12.5, 9, 0.1, 0.55, 20),
)
# fmt: on
ALIASES = {"nyc": "new york", "new york city": "new york"}


def fold(name: str) -> str:
    """Case-, accent- and spacing-insensitive form of a name (``"São  Paulo"`` -> ``"sao paulo"``)."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.casefold().split())


def find_city(name: str) -> City | None:
    key = fold(name)
    key = ALIASES.get(key, key)
    return next((c for c in CITIES if c.key == key), None)


def city_near(latitude: float, longitude: float) -> City | None:
    return next(
        (
            c
            for c in CITIES
            if abs(c.latitude - latitude) <= NEAR_DEG and abs(c.longitude - longitude) <= NEAR_DEG
        ),
        None,
    )


def _generic_city(latitude: float, longitude: float) -> City:
    """A climate from latitude alone for coordinates not in the table."""
    warm = 28.0 - 0.45 * abs(latitude)
    swing = min(25.0, 0.45 * abs(latitude))
    jan, jul = (
        (warm - swing / 2, warm + swing / 2)
        if latitude >= 0
        else (warm + swing / 2, warm - swing / 2)
    )
    name = f"{latitude:.2f},{longitude:.2f}"
    return City(
        id=0, name=name, country="", country_code="", admin1="",
        latitude=latitude, longitude=longitude, elevation=0, timezone="GMT", population=0,
        jan_c=jan, jul_c=jul, diurnal_c=8, wet_jan=0.35, wet_jul=0.35, wind_kph=12,
    )  # fmt: skip


# --- forecast model ------------------------------------------------------------------------


def _timezone(name: str) -> tuple[ZoneInfo | None, str]:
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError):
        return None, "GMT"


def _day_of_year_mean(city: City, day: date) -> float:
    # Cosine between the January and July means, peaking mid-January / mid-July.
    phase = 2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25
    return (city.jan_c + city.jul_c) / 2 + (city.jan_c - city.jul_c) / 2 * math.cos(phase)


def _wetness(city: City, day: date) -> float:
    phase = 2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25
    return (city.wet_jan + city.wet_jul) / 2 + (city.wet_jan - city.wet_jul) / 2 * math.cos(phase)


def _clamp(value: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, value))


def day_hours(
    seed: int, city: City, latitude: float, longitude: float, day: date
) -> dict[str, list]:
    """24 hourly values of every variable for one local day; deterministic per (seed, place, day)."""
    rng = random.Random(f"{seed}|{latitude:.3f}|{longitude:.3f}|{day.isoformat()}")
    mean = _day_of_year_mean(city, day) + rng.gauss(0, 2.5)
    wet = _clamp(_wetness(city, day) + rng.gauss(0, 0.2), 0.0, 1.0)
    wind_base = city.wind_kph * rng.uniform(0.6, 1.4)
    out: dict[str, list] = {name: [] for name in VARIABLES}
    for hour in range(24):
        temp = mean + city.diurnal_c / 2 * math.cos(2 * math.pi * (hour - 15) / 24)
        temp += rng.gauss(0, 0.3)
        wind = max(0.0, wind_base + rng.gauss(0, 2.0))
        prob = round(100 * _clamp(wet + rng.gauss(0, 0.08), 0.0, 1.0))
        rainy = prob >= 60 and rng.random() < prob / 100
        precip = round(rng.uniform(0.2, 3.0), 1) if rainy else 0.0
        feels = temp - wind / 10 if temp < 15 else temp + max(0.0, temp - 24) * 0.3 * (0.5 + wet)
        out["temperature_2m"].append(round(temp, 1))
        out["apparent_temperature"].append(round(feels, 1))
        out["precipitation_probability"].append(prob)
        out["precipitation"].append(precip)
        out["snowfall"].append(round(precip * 0.7, 2) if temp < 0.5 else 0.0)
        out["wind_speed_10m"].append(round(wind, 1))
        out["weather_code"].append(
            (71 if temp < 0.5 else 61) if precip else (3 if prob > 40 else 1)
        )
        out["relative_humidity_2m"].append(round(_clamp(45 + 50 * wet + rng.gauss(0, 5), 5, 100)))
    return out


def _apply_data_fault(fault: str, hours: dict[str, list]) -> None:
    """Change one day's hourly values in place (index = local hour)."""
    n = len(hours["temperature_2m"])
    if fault == "nan":
        hours["temperature_2m"][13] = None
        hours["temperature_2m"][14] = float("nan")
    elif fault == "absurd_hot":
        hours["temperature_2m"][14] = 70.0
    elif fault == "absurd_cold":
        hours["temperature_2m"][14] = -90.0
    elif fault == "blizzard":
        hours.update(
            temperature_2m=[-15.0] * n,
            apparent_temperature=[-25.0] * n,
            wind_speed_10m=[60.0] * n,
            precipitation_probability=[90] * n,
            precipitation=[2.5] * n,
            snowfall=[2.0] * n,
            weather_code=[75] * n,
        )
    elif fault == "heatwave":
        hours.update(
            temperature_2m=[38.0] * n,
            apparent_temperature=[41.0] * n,
            wind_speed_10m=[6.0] * n,
            precipitation_probability=[0] * n,
            precipitation=[0.0] * n,
            snowfall=[0.0] * n,
            weather_code=[0] * n,
        )
    elif fault == "downpour":
        hours.update(
            precipitation_probability=[95] * n,
            precipitation=[8.0] * n,
            weather_code=[65] * n,
        )


# --- faults and counters -------------------------------------------------------------------


@dataclass
class FaultSpec:
    fault: str
    times: int | None  # None: until reset
    retry_after: float = 0.0
    seconds: float | None = None


def _fault_spec(key: str, raw: Any) -> FaultSpec:
    spec = {"fault": raw} if isinstance(raw, str) else raw
    if not isinstance(spec, dict) or spec.get("fault") not in FAULTS:
        raise ValueError(f"{key!r}: fault must be one of {', '.join(FAULTS)}")
    times = spec.get("times")
    if times is not None and (not isinstance(times, int) or times < 1):
        raise ValueError(f"{key!r}: times must be a positive integer")
    return FaultSpec(
        spec["fault"],
        times,
        float(spec.get("retry_after", 0.0)),
        None if spec.get("seconds") is None else float(spec["seconds"]),
    )


def _fault_key(raw: str) -> str:
    """Faults are keyed by folded city name, ``'*'`` or ``'lat,lon'`` rounded to 2 decimals."""
    parts = raw.split(",")
    if len(parts) == 2:
        try:
            return f"{float(parts[0]):.2f},{float(parts[1]):.2f}"
        except ValueError:
            pass
    return "*" if raw.strip() == "*" else fold(raw)


class WeatherStub:
    """Mutable state of one stub: seed, faults and request counters."""

    def __init__(self, seed: int = 0, timeout_fault_s: float = 30.0) -> None:
        self.seed = seed
        self.timeout_fault_s = timeout_fault_s
        self.faults: dict[str, FaultSpec] = {}
        self.reset()

    def reset(self) -> None:
        self.faults.clear()
        self.forecast_requests: dict[str, int] = {}
        self.search_requests: dict[str, int] = {}
        self.apikeys: dict[str, int] = {}  # the stub is a test double: it reports keys seen
        self.without_apikey = 0

    def count_key(self, request: Request) -> None:
        key = request.query_params.get("apikey")
        if key is None:
            self.without_apikey += 1
        else:
            self.apikeys[key] = self.apikeys.get(key, 0) + 1

    def take_fault(self, keys: list[str]) -> FaultSpec | None:
        for key in [*keys, "*"]:
            spec = self.faults.get(key)
            if spec is None:
                continue
            if spec.times is not None:
                spec.times -= 1
                if spec.times <= 0:
                    del self.faults[key]
            return spec
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "forecast_requests": dict(sorted(self.forecast_requests.items())),
            "search_requests": dict(sorted(self.search_requests.items())),
            "forecast_total": sum(self.forecast_requests.values()),
            "apikeys": dict(self.apikeys),
            "without_apikey": self.without_apikey,
            "faults": {k: vars(v) for k, v in self.faults.items()},
        }


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": True, "reason": reason}, status_code=status, headers=headers)


def _json(body: dict[str, Any]) -> Response:
    # Starlette refuses NaN; the "nan" fault needs it on the wire (Python's json reads it back).
    return Response(json.dumps(body, allow_nan=True), media_type="application/json")


def _float_param(request: Request, name: str) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        raise ValueError(f"Parameter '{name}' is required.")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"Parameter '{name}' must be a number.") from None
    if not math.isfinite(value):
        raise ValueError(f"Parameter '{name}' must be finite.")
    return value


def _days(request: Request, today: date) -> list[date]:
    start_raw, end_raw = (
        request.query_params.get("start_date"),
        request.query_params.get("end_date"),
    )
    if start_raw or end_raw:
        if not (start_raw and end_raw):
            raise ValueError("Parameter 'start_date' and 'end_date' must be set together.")
        try:
            start, end = date.fromisoformat(start_raw), date.fromisoformat(end_raw)
        except ValueError:
            raise ValueError("Dates must be YYYY-MM-DD.") from None
        if end < start or (end - start).days >= 92:
            raise ValueError("'end_date' must be on or after 'start_date', at most 92 days.")
    else:
        n = int(request.query_params.get("forecast_days", "7"))
        if not 0 <= n <= MAX_FORECAST_DAYS:
            raise ValueError(
                f"Parameter 'forecast_days' must be between 0 and {MAX_FORECAST_DAYS}."
            )
        start, end = today, today + timedelta(days=n - 1)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def create_weather_app(seed: int = 0, *, timeout_fault_s: float = 30.0) -> FastAPI:
    """A FastAPI app serving one weather stub (Open-Meteo's routes plus test controls)."""
    stub = WeatherStub(seed, timeout_fault_s)
    app = FastAPI(
        title="Dresscode weather stub (Open-Meteo shape; a test double, not a forecast)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.weather_stub = stub

    @app.get("/v1/search")
    async def search(request: Request) -> Response:
        started = time.perf_counter()
        stub.count_key(request)
        name = request.query_params.get("name", "")
        try:
            count = int(request.query_params.get("count", "10"))
        except ValueError:
            return _error(400, "Parameter 'count' must be an integer.")
        stub.search_requests[fold(name)] = stub.search_requests.get(fold(name), 0) + 1
        city = find_city(name) if len(name.strip()) >= 2 else None
        body: dict[str, Any] = {}
        if city is not None and count >= 1:
            body["results"] = [
                {
                    "id": city.id,
                    "name": city.name,
                    "latitude": city.latitude,
                    "longitude": city.longitude,
                    "elevation": city.elevation,
                    "feature_code": "PPLC" if city.population > 3_000_000 else "PPLA",
                    "country_code": city.country_code,
                    "timezone": city.timezone,
                    "population": city.population,
                    "country": city.country,
                    "admin1": city.admin1,
                }
            ]
        body["generationtime_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return JSONResponse(body)

    @app.get("/v1/forecast")
    async def forecast(request: Request) -> Response:
        started = time.perf_counter()
        stub.count_key(request)
        try:
            latitude, longitude = (
                _float_param(request, "latitude"),
                _float_param(request, "longitude"),
            )
            if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
                raise ValueError(
                    "Latitude must be in range of -90 to 90°. Longitude must be in range of -180 to 180°."
                )
        except ValueError as exc:
            return _error(400, str(exc))
        known = city_near(latitude, longitude)
        city = known or _generic_city(latitude, longitude)
        coord_key = f"{latitude:.2f},{longitude:.2f}"
        name_key = city.key if known else coord_key
        stub.forecast_requests[name_key] = stub.forecast_requests.get(name_key, 0) + 1

        fault = stub.take_fault([name_key, coord_key])
        if fault is not None and fault.fault in TRANSPORT_FAULTS:
            if fault.fault == "timeout":
                await asyncio.sleep(
                    stub.timeout_fault_s if fault.seconds is None else fault.seconds
                )
            elif fault.fault == "server_error":
                return _error(500, "Internal server error (injected by the weather stub).")
            elif fault.fault == "rate_limited":
                headers = {"Retry-After": f"{fault.retry_after:g}"}
                return _error(429, "Too many requests (injected by the weather stub).", headers)
            elif fault.fault == "bad_request":
                return _error(400, "Invalid request (injected by the weather stub).")
            elif fault.fault == "malformed":
                return Response(
                    "<html><body>502 upstream hiccup</body></html>", media_type="text/html"
                )

        variables = [v for v in request.query_params.get("hourly", "").split(",") if v]
        unknown = [v for v in variables if v not in VARIABLES]
        if unknown:
            return _error(
                400, f"Cannot initialize WeatherVariable from invalid String value {unknown[0]}."
            )
        tz_param = request.query_params.get("timezone", "GMT")
        zone, tz_name = _timezone(city.timezone if tz_param == "auto" else tz_param)
        try:
            days = _days(request, datetime.now(zone or UTC).date())
        except ValueError as exc:
            return _error(400, str(exc))

        hourly: dict[str, list] = {"time": []}
        for name in variables:
            hourly[name] = []
        for day in days:
            hours = day_hours(stub.seed, city, latitude, longitude, day)
            if fault is not None:
                _apply_data_fault(fault.fault, hours)
            hourly["time"].extend(f"{day.isoformat()}T{h:02d}:00" for h in range(24))
            for name in variables:
                hourly[name].extend(hours[name])
        units = {k: UNITS[k] for k in hourly}
        if fault is not None and fault.fault == "missing_fields":
            hourly.pop("apparent_temperature", None)
            units.pop("apparent_temperature", None)

        offset = (
            zone.utcoffset(datetime.combine(days[0], datetime.min.time()))
            if zone and days
            else None
        )
        body: dict[str, Any] = {
            "latitude": round(latitude, 4),
            "longitude": round(longitude, 4),
            "generationtime_ms": round((time.perf_counter() - started) * 1000, 3),
            "utc_offset_seconds": int(offset.total_seconds()) if offset else 0,
            "timezone": tz_name,
            "timezone_abbreviation": (
                zone.tzname(datetime.combine(days[0], datetime.min.time()))
                if zone and days
                else "GMT"
            )
            or "GMT",
            "elevation": city.elevation,
        }
        if variables:
            body["hourly_units"] = units
            body["hourly"] = hourly
        return _json(body)

    @app.post("/_faults")
    async def set_faults(request: Request) -> Response:
        refused = control.refusal(request)
        if refused is not None:
            return _error(*refused)
        try:
            raw = await request.json()
            if not isinstance(raw, dict):
                raise ValueError("body must be a JSON object of city -> fault")
            specs = {_fault_key(k): _fault_spec(k, v) for k, v in raw.items()}
        except ValueError as exc:
            return _error(400, str(exc))
        stub.faults.update(specs)
        return JSONResponse(stub.stats())

    @app.post("/_reset")
    async def reset(request: Request) -> Response:
        refused = control.refusal(request)
        if refused is not None:
            return _error(*refused)
        stub.reset()
        return JSONResponse(stub.stats())

    @app.get("/_stats")
    async def stats() -> Response:
        return JSONResponse(stub.stats())

    return app
