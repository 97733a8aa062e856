"""Counters, gauges and histograms under vLLM's metric names, plus simulator-only ones.

Hand-rolled rather than ``prometheus_client``: its registry is process-global, and tests run
several simulators in one process. The text follows Prometheus' exposition format.
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# vLLM's bucket edges (seconds), so dashboards built against vLLM read the simulator too.
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
E2E_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
FINISH_REASONS = ("stop", "length", "tool_calls", "abort")


@dataclass
class Histogram:
    """Cumulative-bucket histogram; ``counts[i]`` counts observations <= ``edges[i]``."""

    edges: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.edges)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.edges, value)
        if i < len(self.counts):
            self.counts[i] += 1  # cumulated at render time
        self.total += value
        self.n += 1


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _family(
    out: list[str], name: str, kind: str, help_: str, samples: Sequence[tuple[str, float]]
) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(f"{name}{labels} {float(value)!r}" for labels, value in samples)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """All numbers the simulator reports, for ``/metrics`` and ``/sim/stats``."""

    def __init__(self, models: list[str], max_num_seqs: int) -> None:
        self.models = list(models)
        self.max_num_seqs = max_num_seqs
        self.started = time.monotonic()
        self.running: dict[str, int] = dict.fromkeys(self.models, 0)
        self.waiting: dict[str, int] = dict.fromkeys(self.models, 0)
        self.reset()

    def reset(self) -> None:
        """Zero counters and histograms; high-water marks restart from the current load."""
        self.reset_at = time.monotonic()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.success: dict[tuple[str, str], int] = defaultdict(int)
        for model in self.models:
            for reason in FINISH_REASONS:
                self.success[(model, reason)] = 0
        self.prompt_tokens: dict[str, int] = dict.fromkeys(self.models, 0)
        self.generation_tokens: dict[str, int] = dict.fromkeys(self.models, 0)
        self.preemptions: dict[str, int] = dict.fromkeys(self.models, 0)
        self.ttft = {m: Histogram(TTFT_BUCKETS) for m in self.models}
        self.e2e = {m: Histogram(E2E_BUCKETS) for m in self.models}
        self.busy_slot_seconds = 0.0
        self.max_running_seen = sum(self.running.values())
        self.max_waiting_seen = sum(self.waiting.values())

    # -- events -----------------------------------------------------------------------------

    def received(self, model: str, status: int) -> None:
        """One chat request answered with ``status`` (200 for streams that started)."""
        self.requests[(model or "unknown", status)] += 1

    def enter_queue(self, model: str) -> None:
        self.waiting[model] += 1
        self.max_waiting_seen = max(self.max_waiting_seen, sum(self.waiting.values()))

    def leave_queue(self, model: str) -> None:
        self.waiting[model] -= 1

    def start_running(self, model: str) -> None:
        self.running[model] += 1
        self.max_running_seen = max(self.max_running_seen, sum(self.running.values()))

    def preempted(self, model: str) -> None:
        self.preemptions[model] += 1

    def stop_running(self, model: str, held_s: float) -> None:
        self.running[model] -= 1
        self.busy_slot_seconds += held_s

    def finished(
        self,
        model: str,
        *,
        reason: str,
        prompt_tokens: int,
        completion_tokens: int,
        ttft_s: float | None,
        e2e_s: float,
    ) -> None:
        self.success[(model, reason)] += 1
        self.prompt_tokens[model] += prompt_tokens
        self.generation_tokens[model] += completion_tokens
        if ttft_s is not None:
            self.ttft[model].observe(ttft_s)
        self.e2e[model].observe(e2e_s)

    # -- views ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        by_status: dict[str, int] = defaultdict(int)
        for (_, status), n in self.requests.items():
            by_status[str(status)] += n
        now = time.monotonic()
        return {
            "simulator": True,
            "requests_total": sum(self.requests.values()),
            "requests_by_status": dict(by_status),
            "running": sum(self.running.values()),
            "waiting": sum(self.waiting.values()),
            "max_running_seen": self.max_running_seen,
            "max_waiting_seen": self.max_waiting_seen,
            "busy_slot_seconds": round(self.busy_slot_seconds, 6),
            "uptime_seconds": round(now - self.started, 6),
            "seconds_since_reset": round(now - self.reset_at, 6),
            "max_num_seqs": self.max_num_seqs,
            "prompt_tokens_total": sum(self.prompt_tokens.values()),
            "generation_tokens_total": sum(self.generation_tokens.values()),
            "preemptions_total": sum(self.preemptions.values()),
        }

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        out: list[str] = []
        by_model = {m: _labels(model_name=m) for m in self.models}

        def per_model(values: dict[str, int]) -> list[tuple[str, float]]:
            return [(by_model[m], values[m]) for m in self.models]

        _family(
            out,
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            per_model(self.running),
        )
        _family(
            out,
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            per_model(self.waiting),
        )
        _family(
            out,
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            per_model(self.prompt_tokens),
        )
        _family(
            out,
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            per_model(self.generation_tokens),
        )
        _family(
            out,
            "vllm:num_preemptions_total",
            "counter",
            "Cumulative number of preemption from the engine.",
            per_model(self.preemptions),
        )
        success = [
            (_labels(finished_reason=r, model_name=m), n)
            for (m, r), n in sorted(self.success.items())
        ]
        _family(
            out,
            "vllm:request_success_total",
            "counter",
            "Count of successfully processed requests.",
            success,
        )
        self._histogram(
            out,
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            self.ttft,
        )
        self._histogram(
            out,
            "vllm:e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            self.e2e,
        )
        received = [
            (_labels(model_name=m, status=str(code)), n)
            for (m, code), n in sorted(self.requests.items())
        ]
        _family(
            out,
            "sim:requests_total",
            "counter",
            "Chat requests received by the simulator, by status code.",
            received,
        )
        for name, kind, help_, value in (
            (
                "sim:max_num_requests_running",
                "gauge",
                "High-water mark of concurrently running requests.",
                self.max_running_seen,
            ),
            (
                "sim:max_num_requests_waiting",
                "gauge",
                "High-water mark of queued requests.",
                self.max_waiting_seen,
            ),
            (
                "sim:busy_slot_seconds_total",
                "counter",
                "Sum over requests of time spent holding a slot.",
                self.busy_slot_seconds,
            ),
            (
                "sim:max_num_seqs",
                "gauge",
                "Concurrent slots (vLLM --max-num-seqs).",
                self.max_num_seqs,
            ),
            (
                "sim:uptime_seconds",
                "gauge",
                "Seconds since the simulator started.",
                time.monotonic() - self.started,
            ),
        ):
            _family(out, name, kind, help_, [("", value)])
        return "\n".join(out) + "\n"

    def _histogram(
        self, out: list[str], name: str, help_: str, hists: dict[str, Histogram]
    ) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} histogram")
        for model, hist in hists.items():
            cumulative = 0
            for edge, count in zip(hist.edges, hist.counts, strict=True):
                cumulative += count
                out.append(
                    f"{name}_bucket{_labels(le=repr(edge), model_name=model)} {float(cumulative)!r}"
                )
            out.append(f"{name}_bucket{_labels(le='+Inf', model_name=model)} {float(hist.n)!r}")
            out.append(f"{name}_count{_labels(model_name=model)} {float(hist.n)!r}")
            out.append(f"{name}_sum{_labels(model_name=model)} {hist.total!r}")
