"""``python -m dresscode.sim`` / ``dresscode sim``: serve the vLLM simulator.

Every option can also be set as ``DRESSCODE_SIM_<OPTION>`` (``--max-num-seqs`` ->
``DRESSCODE_SIM_MAX_NUM_SEQS``); repeatable options take a comma-separated list there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dresscode.sim.config import (
    DEFAULT_MODEL,
    PROFILES,
    SimConfig,
    env_default,
    env_name,
    parse_served_model,
)

BANNER = """\
==============================================================================
  SIMULATOR — not a real model; quality numbers are not Gemma's
  dresscode vLLM simulator on http://{host}:{port}/v1
  models: {models}
  slots: {slots} (queue {queue}), latency: {latency}
==============================================================================
"""


@dataclass(frozen=True)
class _Option:
    """One CLI option with its env twin; parsed here so a bad env value names its variable."""

    flag: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    many: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def env_value(self) -> Any:
        raw = env_default(self.flag)
        if raw is None:
            return self.default
        try:
            return (
                [self.parse(p) for p in raw.split(",") if p.strip()]
                if self.many
                else self.parse(raw)
            )
        except ValueError as exc:
            raise SystemExit(f"{env_name(self.flag)}={raw!r}: {exc}") from None


def _optional_float(raw: str) -> float | None:
    return None if raw.strip().lower() in ("", "none", "off") else float(raw)


OPTIONS = [
    _Option("--host", str, "127.0.0.1", "interface to bind", metavar="HOST"),
    _Option("--port", int, 8000, "port to bind"),
    _Option(
        "--served-model-name",
        parse_served_model,
        None,
        f"repeatable; profiles: {', '.join(PROFILES)} (default: {DEFAULT_MODEL}=faithful)",
        many=True,
        metavar="NAME[=PROFILE]",
    ),
    _Option("--max-num-seqs", int, 16, "concurrent slots (vLLM's running batch)"),
    _Option(
        "--scheduling-policy",
        str,
        "fcfs",
        "fcfs, or priority: queued requests by their `priority` field, lower first (vLLM's)",
    ),
    _Option(
        "--max-queue", int, 256, "queued requests beyond the slots before 503 admission rejections"
    ),
    _Option("--max-model-len", int, 32768, "context length in tokens"),
    _Option("--ttft-ms", float, 120.0, "time to first token, ms"),
    _Option("--itl-ms", float, 12.0, "inter-token latency, ms"),
    _Option("--load-factor", float, 0.5, "ITL x (1 + load_factor x running / max_num_seqs)"),
    _Option("--jitter", float, 0.1, "relative, seeded latency jitter"),
    _Option(
        "--fixed-latency-ms",
        _optional_float,
        None,
        "every request holds its slot exactly this long (benchmarks)",
        metavar="MS",
    ),
    _Option("--seed", int, 0, "seed of every random choice"),
    _Option(
        "--script",
        Path,
        None,
        "response script JSONL (repeatable; re-read when it changes)",
        many=True,
    ),
    _Option("--fault-rate-5xx", float, 0.0, "probability of a 500/503 answer"),
    _Option("--fault-rate-429", float, 0.0, "probability of a 429 answer"),
    _Option("--fault-rate-timeout", float, 0.0, "probability of hanging past any client timeout"),
    _Option("--timeout-fault-seconds", float, 120.0, "how long a timeout fault hangs"),
    _Option("--api-key", str, None, "require 'Authorization: Bearer <key>'", metavar="KEY"),
]


def _argtype(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a parser so argparse shows its message instead of "invalid <function> value"."""

    def convert(raw: str) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dresscode sim",
        description="A vLLM-faithful simulator of Gemma 4 behind the OpenAI-compatible API. "
        "Not a real model: its quality numbers are not Gemma's.",
        epilog="Every option is also settable as DRESSCODE_SIM_<OPTION> (comma-separated when repeatable).",
    )
    for option in OPTIONS:
        kinds: dict[object, str] = {int: "N", float: "X", Path: "PATH"}
        kind = kinds.get(option.parse, "VALUE")
        shown = f" (default: {option.default})" if option.default is not None else ""
        kwargs: dict[str, Any] = {
            "type": _argtype(option.parse),
            "help": option.help + shown,
            "dest": option.dest,
            "metavar": option.metavar or kind,
        }
        if option.many:
            parser.add_argument(option.flag, action="append", default=None, **kwargs)
        else:
            parser.add_argument(option.flag, default=None, **kwargs)
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (costly under load)"
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def config_from_args(argv: list[str] | None = None) -> tuple[SimConfig, argparse.Namespace]:
    """The simulator config from CLI arguments over environment over defaults."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]  # `dresscode sim -- --port 8001` passes the separator through
    ns = build_parser().parse_args(args)
    options: dict[str, Any] = {}
    for option in OPTIONS:
        value = getattr(ns, option.dest)
        value = option.env_value() if value is None else value
        if value is not None:
            options[option.dest] = value
    options["served_models"] = tuple(
        options.pop("served_model_name", None) or SimConfig().served_models
    )
    options["scripts"] = tuple(options.pop("script", None) or ())
    options["access_log"] = ns.access_log
    try:
        return SimConfig.from_options(**options), ns
    except ValueError as exc:
        raise SystemExit(f"dresscode sim: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Parse options, print the banner, serve until interrupted."""
    import uvicorn

    from dresscode.sim.server import create_app

    config, ns = config_from_args(argv)
    latency = (
        f"fixed {config.fixed_latency_ms:g} ms"
        if config.fixed_latency_ms is not None
        else f"ttft {config.ttft_ms:g} ms + {config.itl_ms:g} ms/token"
    )
    models = ", ".join(f"{m.name} ({m.profile.name})" for m in config.served_models)
    print(
        BANNER.format(
            host=config.host,
            port=config.port,
            models=models,
            slots=config.max_num_seqs,
            queue=config.max_queue,
            latency=latency,
        ),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=ns.log_level,
        access_log=config.access_log,
        timeout_graceful_shutdown=2,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
