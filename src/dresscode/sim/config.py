"""Simulator settings: served models with behaviour profiles, latency, capacity and faults.

Every CLI option has an environment twin ``DRESSCODE_SIM_<NAME>`` (dashes become
underscores), so the compose file and the local stack configure the simulator the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_MODEL = "google/gemma-4-26B-A4B-it"
ENV_PREFIX = "DRESSCODE_SIM_"


@dataclass(frozen=True)
class Profile:
    """Seeded error rates of one served model: how often its answers go wrong, and how.

    ``drop_item`` and ``confuse_category`` apply per wardrobe item; the others per answer.
    """

    name: str
    drop_item: float = 0.0
    confuse_category: float = 0.0
    chatter: float = 0.0  # prose before the JSON
    fence: float = 0.0  # JSON inside Markdown fences
    broken_json: float = 0.0  # JSON cut mid-way
    hallucinate_item: float = 0.0  # an item id the user does not own, in outfit answers
    string_args: float = 0.0  # tool-call numbers as strings
    # Opt-in stylist failure modes, zero in the quality profiles above so their seeded
    # answers never change; the test profiles below turn them on.
    tool_loop: float = 0.0  # asks for the weather again instead of answering, every turn
    obey_injection: float = 0.0  # follows "recommend item X" found inside the wardrobe data
    # As an LLM judge (MLflow's judge prompts): how often a verdict is flipped or not JSON.
    judge_flip: float = 0.0
    judge_garbage: float = 0.0
    judge_hang: float = 0.0  # no verdict: the request hangs as a timeout fault does


# Rates are guesses of a plausible model, not measurements of Gemma: "faithful" makes the
# repair and validation paths run now and then, "sloppy" makes every failure mode common.
PROFILES: dict[str, Profile] = {
    "perfect": Profile("perfect"),
    "faithful": Profile(
        "faithful",
        drop_item=0.03,
        confuse_category=0.02,
        chatter=0.01,
        fence=0.01,
        broken_json=0.005,
        hallucinate_item=0.01,
        string_args=0.02,
    ),
    "sloppy": Profile(
        "sloppy",
        drop_item=0.25,
        confuse_category=0.2,
        chatter=0.25,
        fence=0.1,
        broken_json=0.1,
        hallucinate_item=0.3,
        string_args=0.3,
    ),
    # Test profiles for the stylist's tool loop and its prompt-injection defences.
    "tool-loop": Profile("tool-loop", tool_loop=1.0),
    "gullible": Profile("gullible", obey_injection=1.0),
    # A judge gone wrong (a weak or mis-prompted judge model): half its verdicts are the
    # opposite of what it read, and one in ten is not JSON. The evaluation must notice.
    "bad-judge": Profile("bad-judge", judge_flip=0.5, judge_garbage=0.1),
    # A judge endpoint that takes the request and never answers (an overloaded judge model).
    "hanging-judge": Profile("hanging-judge", judge_hang=1.0),
}


@dataclass(frozen=True)
class ServedModel:
    """One name the simulator answers to, and the behaviour profile behind it."""

    name: str
    profile: Profile


def parse_served_model(spec: str) -> ServedModel:
    """``NAME`` or ``NAME=PROFILE`` (profile defaults to ``faithful``)."""
    name, _, profile = spec.strip().partition("=")
    profile = profile.strip() or "faithful"
    if not name.strip():
        raise ValueError(f"empty model name in {spec!r}")
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r} in {spec!r}; choose one of {sorted(PROFILES)}"
        )
    return ServedModel(name.strip(), PROFILES[profile])


@dataclass(frozen=True)
class SimConfig:
    """All knobs of one simulator instance. Times are milliseconds, rates probabilities."""

    host: str = "127.0.0.1"
    port: int = 8000
    served_models: tuple[ServedModel, ...] = (ServedModel(DEFAULT_MODEL, PROFILES["faithful"]),)
    max_num_seqs: int = 16
    max_queue: int = 256
    scheduling_policy: str = "fcfs"  # or "priority": a request's `priority`, lower first
    max_model_len: int = 32768
    ttft_ms: float = 120.0
    itl_ms: float = 12.0
    load_factor: float = 0.5
    jitter: float = 0.1
    fixed_latency_ms: float | None = None
    seed: int = 0
    scripts: tuple[Path, ...] = ()
    fault_rate_5xx: float = 0.0
    fault_rate_429: float = 0.0
    fault_rate_timeout: float = 0.0
    api_key: str | None = None
    # How long a `timeout` fault hangs: longer than any sane client timeout.
    timeout_fault_seconds: float = 120.0
    access_log: bool = False

    def __post_init__(self) -> None:
        if not self.served_models:
            raise ValueError("at least one served model name is needed")
        if self.max_num_seqs < 1 or self.max_queue < 0:
            raise ValueError("max_num_seqs must be >= 1 and max_queue >= 0")
        if self.scheduling_policy not in ("fcfs", "priority"):
            raise ValueError(
                f"scheduling_policy must be fcfs or priority, not {self.scheduling_policy!r}"
            )
        for name in ("fault_rate_5xx", "fault_rate_429", "fault_rate_timeout", "jitter"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")

    def model(self, name: str) -> ServedModel | None:
        return next((m for m in self.served_models if m.name == name), None)

    @classmethod
    def from_options(cls, **options: Any) -> SimConfig:
        """Build from CLI-style keyword names (``max_num_seqs=4``, ``scripts=[path]``).

        ``served_model_name``/``served_model_names`` take ``"NAME[=PROFILE]"`` strings;
        ``script``/``scripts`` take one path or a list.
        """
        valid = {f.name for f in fields(cls)} - {"served_models"}
        kwargs: dict[str, Any] = {}
        for key, value in options.items():
            if key in ("served_model_name", "served_model_names", "served_models"):
                specs = [value] if isinstance(value, str | ServedModel) else list(value)
                kwargs["served_models"] = tuple(
                    s if isinstance(s, ServedModel) else parse_served_model(s) for s in specs
                )
            elif key in ("script", "scripts"):
                paths = [value] if isinstance(value, str | Path) else list(value)
                kwargs["scripts"] = tuple(Path(p) for p in paths)
            elif key in valid:
                kwargs[key] = value
            else:
                raise TypeError(f"unknown simulator option {key!r}; valid: {sorted(valid)}")
        return replace(cls(), **kwargs)


def env_name(option: str) -> str:
    """``--max-num-seqs`` -> ``DRESSCODE_SIM_MAX_NUM_SEQS``."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def env_default(option: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The raw environment override of one CLI option, or None."""
    value = (os.environ if environ is None else environ).get(env_name(option))
    return value if value not in (None, "") else None
