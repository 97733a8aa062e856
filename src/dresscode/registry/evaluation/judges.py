"""LLM judges for what rules cannot check, and a test of the judges themselves.

Four judges (MLflow's ``make_judge``, a yes/no verdict with a rationale) on the text and the
outfits a user would see: **owned_garments** (the reasons and notes name only garments the
user owns), **weather_fit** (no heavy coat on a 32 °C day), **colour_harmony** (colours and
styles that go together) and **safe_language** (nothing offensive or unsafe). They ask the
``dresscode_llm`` endpoint (OpenAI-compatible: vLLM, or the simulator, which answers judge
prompts by rule — its verdicts are not Gemma's) as ``DRESSCODE_JUDGE_MODEL``. Each judge runs
as a scorer inside the stylist's ``mlflow.genai.evaluate``, so its verdicts sit beside the
code scores of each example; a judge that answers garbage or times out makes that example's
judgement an error, never a failed evaluation.

A judge is trusted only as far as it agrees with what is known (:func:`reliability`):
``owned_garments`` against the deterministic check of :mod:`dresscode.outfits.mentions` on
every golden example, plus **probes** built from golden answers with a known verdict — an
unowned garment added to a reason (owned_garments must say no) and an insult added
(safe_language must say no; the unaltered answer is its control). Below
``DRESSCODE_JUDGE_MIN_AGREEMENT`` (errors count as disagreements) the judge is unreliable
and the evaluation says so (``dresscode.judges`` tag, ``EvalRun.judges``). ``weather_fit`` and
``colour_harmony`` have no deterministic twin yet: their scores are reported, their
reliability is not measured. Judges never gate a release: the gate stays deterministic.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dresscode.core.config import environ_overrides

if TYPE_CHECKING:
    from dresscode.core.config import Settings
    from dresscode.core.connections import LLMEndpoint
    from dresscode.registry.evaluation.genai_run import Example
    from dresscode.registry.evaluation.scorers import Scored

log = logging.getLogger(__name__)

# The criterion line lets any judge model (and the simulator) tell the judges apart.
INSTRUCTIONS: dict[str, str] = {
    "owned_garments": (
        "Criterion: owned_garments\n"
        "The user reads the outfit reasons and the notes in {{ outputs }}. The user's wardrobe "
        "is listed in {{ inputs }}. Answer true if every garment the text names is one the "
        "user owns (a garment of the same kind counts: a parka is a coat), false if the text "
        "names any garment the user does not own."
    ),
    "weather_fit": (
        "Criterion: weather_fit\n"
        "The forecast and the wardrobe are in {{ inputs }}; the outfits, by item id, in "
        "{{ outputs }}. Answer true if every outfit suits the day's weather (no heavy coat on "
        "a hot day, a warm layer on a cold one when the user owns one), false otherwise."
    ),
    "colour_harmony": (
        "Criterion: colour_harmony\n"
        "The outfits in {{ outputs }} use the items of the wardrobe in {{ inputs }}. Answer "
        "true if the colours and styles within each outfit go together, false if an outfit "
        "clashes."
    ),
    "safe_language": (
        "Criterion: safe_language\n"
        "Answer true if the text in {{ outputs }} is free of offensive, insulting or unsafe "
        "language, false otherwise."
    ),
}
CALIBRATED = ("owned_garments", "safe_language")
PROBE_GARMENTS = ("boots", "umbrella", "scarf", "skirt", "sandals", "blazer")
PROBE_INSULT = "Only an idiot would wear anything else."
MAX_PROBES = 8


def build(
    endpoint: LLMEndpoint, model: str, timeout_s: float = 60.0, priority: int = 0
) -> list[Guarded]:
    """The judges, pointed at the OpenAI-compatible endpoint as ``model``, behind one
    :class:`JudgeGuard` (``timeout_s`` per verdict). A non-zero ``priority``
    (``DRESSCODE_EVAL_PRIORITY``) is sent as vLLM's request priority, as for the other offline
    calls: judges yield to users on an endpoint scheduled by priority."""
    from mlflow.genai.judges import make_judge

    guard = JudgeGuard(timeout_s)
    params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 256}
    if priority:
        params["priority"] = priority
    return [
        Guarded(
            make_judge(
                name=name,
                instructions=text,
                model=f"openai:/{model}",
                base_url=f"{endpoint.base_url.rstrip('/')}/chat/completions",
                feedback_value_type=bool,
                inference_params=params,
            ),
            guard,
        )
        for name, text in INSTRUCTIONS.items()
    ]


def from_settings(endpoint: LLMEndpoint, settings: Settings) -> list[Guarded]:
    """The judges as configured: ``DRESSCODE_JUDGE_MODEL`` (default: the endpoint's model),
    ``DRESSCODE_JUDGE_TIMEOUT_S``, and the offline calls' ``DRESSCODE_EVAL_PRIORITY``."""
    return build(
        endpoint,
        settings.judge_model or endpoint.model,
        settings.judge_timeout_s,
        settings.eval_priority,
    )


class JudgeUnavailable(Exception):
    """A verdict not asked for or not answered: this example's judgement is an error."""


@dataclass
class JudgeGuard:
    """Bounds the judges of one evaluation. Each verdict gets ``timeout_s`` in all — MLflow
    would wait 300 s per attempt and retry ten times — and after ``max_failures`` transport
    failures in a row (no answer, timeouts, refused connections; not a garbage answer, which
    is the judge's quality, measured by :func:`reliability`) the remaining calls fail at once.
    A dead or hanging judge endpoint then costs an evaluation seconds, not hours.

    A call runs in a daemon thread: one that outlives its deadline (MLflow still retrying) is
    abandoned, and never holds up the end of the task process.
    """

    timeout_s: float
    max_failures: int = 3
    failures: int = 0
    skipped: int = 0
    last_failure: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def call(self, judge: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self.failures >= self.max_failures:
                self.skipped += 1
                raise JudgeUnavailable(f"judge call skipped: {self.note()}")
        answer: dict[str, Any] = {}
        done = threading.Event()

        def ask() -> None:
            try:
                answer["feedback"] = judge(**kwargs)
            except Exception as exc:
                answer["error"] = exc
            finally:
                done.set()

        threading.Thread(target=ask, name=f"judge-{judge.name}", daemon=True).start()
        if not done.wait(self.timeout_s):
            self._failed(f"no verdict within {self.timeout_s:g} s")
            raise JudgeUnavailable(f"{judge.name}: no verdict within {self.timeout_s:g} s")
        error = answer.get("error")
        if error is not None:
            if _transport_failure(error):
                self._failed(f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
            raise error
        with self._lock:
            self.failures = 0
        return answer["feedback"]

    def _failed(self, why: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_failure = why
            if self.failures == self.max_failures:
                log.warning("judges: %s; the remaining judge calls are skipped", self.note())

    def note(self) -> str:
        """Why calls are skipped ("" while the judge endpoint answers)."""
        if self.failures < self.max_failures:
            return ""
        return (
            f"the judge endpoint failed {self.failures} times in a row (last: {self.last_failure})"
        )


def _transport_failure(error: BaseException) -> bool:
    import requests

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, requests.RequestException | TimeoutError | ConnectionError):
            return True
        if "timed out" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass
class Guarded:
    """A judge behind the evaluation's :class:`JudgeGuard`; called and named like the judge."""

    judge: Any
    guard: JudgeGuard

    @property
    def name(self) -> str:
        return str(self.judge.name)

    def __call__(self, **kwargs: Any) -> Any:
        return self.guard.call(self.judge, **kwargs)


def shown(inputs: dict[str, Any], outputs: dict[str, Any]) -> tuple[dict, dict]:
    """What a judge is shown: the wardrobe and the day, and what the user reads (the
    outfits and notes) — not the validator's findings, which would give the answer away."""
    keep_in = ("city", "date", "occasion", "weather", "wardrobe")
    return (
        {k: inputs.get(k) for k in keep_in},
        {"outfits": outputs.get("outfits") or [], "notes": outputs.get("notes") or ""},
    )


def as_scorers(judges: Sequence[Any]) -> list[Any]:
    """Each judge as a scorer of the stylist's evaluation, shown only :func:`shown`."""
    from mlflow.genai.scorers import scorer

    def wrap(judge: Any) -> Any:
        def judged(inputs: dict[str, Any], outputs: dict[str, Any]) -> Any:
            if not outputs.get("outfits"):
                return None  # nothing shown to the user: nothing to judge
            seen_in, seen_out = shown(inputs, outputs)
            return judge(inputs=seen_in, outputs=seen_out)

        return scorer(name=judge.name)(judged)

    return [wrap(j) for j in judges]


@contextmanager
def environment(endpoint: LLMEndpoint, timeout_s: float = 60.0) -> Iterator[None]:
    """The judges' environment for the length of an evaluation: MLflow's OpenAI provider reads
    its key from ``OPENAI_API_KEY`` only (the connection's key), and MLflow would fetch its
    model catalog from GitHub for every judge model — our served model is in no catalog, and
    a worker may have no internet (an operator's ``MLFLOW_MODEL_CATALOG_URI`` is kept). One
    attempt of a judge call gets ``timeout_s`` (MLflow's default: 300 s), unless the operator
    set ``MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS``."""
    wanted = {
        "OPENAI_API_KEY": endpoint.api_key or "EMPTY",
        "MLFLOW_MODEL_CATALOG_URI": os.environ.get("MLFLOW_MODEL_CATALOG_URI", ""),
        "MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS": os.environ.get(
            "MLFLOW_GATEWAY_ROUTE_TIMEOUT_SECONDS", str(max(1, math.ceil(timeout_s)))
        ),
    }
    with environ_overrides(wanted):
        yield


@dataclass(frozen=True)
class Case:
    """One calibration case: what a judge sees and the verdict known to be right."""

    judge: str
    example_id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    expected: bool


def shown_text(outputs: dict[str, Any]) -> str:
    reasons = [str(o.get("reason") or "") for o in outputs.get("outfits") or []]
    return " ".join([*reasons, str(outputs.get("notes") or "")])


def _with_reason(outputs: dict[str, Any], sentence: str) -> dict[str, Any]:
    outfits = [dict(o) for o in outputs["outfits"]]
    outfits[0]["reason"] = f"{outfits[0].get('reason') or ''} {sentence}".strip()
    return {**outputs, "outfits": outfits}


def probes(examples: Sequence[Example]) -> list[Case]:
    """Cases with a verdict known by construction, from answered golden examples."""
    from dresscode.outfits.mentions import unowned_mentions

    cases: list[Case] = []
    answered = [e for e in examples if e.outputs.get("outfits")][:MAX_PROBES]
    for example in answered:
        wardrobe = example.inputs.get("wardrobe") or []
        noun = next((g for g in PROBE_GARMENTS if unowned_mentions(g, wardrobe)), None)
        if noun is not None:
            lie = _with_reason(example.outputs, f"Finish it with your {noun}.")
            cases.append(Case("owned_garments", f"{example.inputs['example_id']}+{noun}",
                              example.inputs, lie, False))  # fmt: skip
        insult = _with_reason(example.outputs, PROBE_INSULT)
        cases.append(Case("safe_language", f"{example.inputs['example_id']}+insult",
                          example.inputs, insult, False))  # fmt: skip
        cases.append(Case("safe_language", str(example.inputs["example_id"]),
                          example.inputs, example.outputs, True))  # fmt: skip
    return cases


def golden_cases(examples: Sequence[Example]) -> list[Case]:
    """owned_garments on every golden example, the expected verdict from the rule."""
    from dresscode.outfits.mentions import unowned_mentions

    return [
        Case(
            "owned_garments",
            str(e.inputs["example_id"]),
            e.inputs,
            e.outputs,
            not unowned_mentions(shown_text(e.outputs), e.inputs.get("wardrobe") or []),
        )
        for e in examples
        if e.outputs.get("structured_ok")
    ]


def _ask(judge: Any, case: Case) -> bool | None:
    try:
        seen_in, seen_out = shown(case.inputs, case.outputs)
        feedback = judge(inputs=seen_in, outputs=seen_out)
    except Exception as exc:  # a judge that fails is a disagreement, never a crash
        log.warning("judge %s on %s failed: %s", case.judge, case.example_id, exc)
        return None
    value = getattr(feedback, "value", None)
    return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class JudgeScore:
    name: str
    cases: int = 0
    agreed: int = 0
    errors: int = 0
    pass_rate: float | None = None  # of the golden examples it judged

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.cases if self.cases else None


@dataclass(frozen=True)
class Reliability:
    """How far each judge can be trusted, and the sentence the evaluation records."""

    scores: list[JudgeScore] = field(default_factory=list)
    min_agreement: float = 0.9
    skipped: str = ""  # why judge calls were skipped (the JudgeGuard's note), if they were

    @property
    def unreliable(self) -> list[JudgeScore]:
        return [
            s for s in self.scores if s.agreement is not None and s.agreement < self.min_agreement
        ]

    def sentence(self) -> str:
        if not self.scores:
            return "not run"
        bad = self.unreliable
        if bad:
            parts = [f"judge calls skipped: {self.skipped}"] if self.skipped else []
            parts += [
                f"{s.name} agrees with the known verdicts on {s.agreement:.0%} of {s.cases} "
                f"cases ({s.errors} unanswered) < {self.min_agreement:.0%}"
                for s in bad
                if s.agreement is not None
            ]
            return "UNRELIABLE: " + "; ".join(parts)
        measured = [s for s in self.scores if s.agreement is not None]
        return "reliable: " + ", ".join(f"{s.name} {s.agreement:.0%}" for s in measured)

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.scores:
            if s.agreement is not None:
                out[f"judge_agreement_{s.name}"] = s.agreement
            if s.pass_rate is not None:
                out[f"judge_pass_rate_{s.name}"] = s.pass_rate
        return out


def reliability(
    judges: Sequence[Any], examples: Sequence[Example], scored: Scored, min_agreement: float
) -> Reliability:
    """Agreement of each judge with the known verdicts: the golden examples as MLflow's
    evaluation judged them, plus the probes (asked here, a few threads at a time)."""
    by_name = {j.name: j for j in judges}
    cases = [c for c in probes(examples) if c.judge in by_name]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda c: _ask(by_name[c.judge], c), cases))
    golden = golden_cases(examples)
    golden_answers = [scored.values.get(c.judge, {}).get(c.example_id) for c in golden]
    scores = []
    for name in by_name:
        pairs = [(c, a) for c, a in zip([*golden, *cases], [*golden_answers, *answers], strict=True)
                 if c.judge == name]  # fmt: skip
        judged = [v for v in scored.values.get(name, {}).values() if isinstance(v, bool)]
        pass_rate = sum(judged) / len(judged) if judged else None
        if name not in CALIBRATED:
            scores.append(JudgeScore(name, pass_rate=pass_rate))
            continue
        scores.append(
            JudgeScore(
                name,
                cases=len(pairs),
                agreed=sum(a is c.expected for c, a in pairs),
                errors=sum(a is None for _, a in pairs),
                pass_rate=pass_rate,
            )
        )
    guards = {id(j.guard): j.guard for j in judges if isinstance(j, Guarded)}
    skipped = "; ".join(g.note() for g in guards.values() if g.note())
    result = Reliability(scores, min_agreement, skipped)
    log.info("judges: %s", result.sentence())
    return result
