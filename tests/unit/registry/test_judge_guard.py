"""JudgeGuard: a verdict gets a deadline; transport failures in a row stop the judges, a
garbage answer (the judge's quality, not its availability) does not."""

from __future__ import annotations

import threading

import pytest
import requests

from dresscode.registry.evaluation.judges import Guarded, JudgeGuard, JudgeUnavailable


class Judge:
    name = "owned_garments"

    def __init__(self, answer: object = "yes", error: Exception | None = None) -> None:
        self.answer, self.error, self.calls = answer, error, 0
        self.release = threading.Event()

    def __call__(self, **kwargs: object) -> object:
        self.calls += 1
        if self.answer == "hang":
            self.release.wait(30)
        if self.error is not None:
            raise self.error
        return self.answer


def test_a_verdict_past_its_deadline_is_an_error_and_three_in_a_row_skip_the_rest() -> None:
    hanging = Judge("hang")
    judge = Guarded(hanging, JudgeGuard(timeout_s=0.05))
    for _ in range(3):
        with pytest.raises(JudgeUnavailable, match=r"no verdict within 0\.05 s"):
            judge(inputs={}, outputs={})
    with pytest.raises(JudgeUnavailable, match="skipped: the judge endpoint failed 3 times"):
        judge(inputs={}, outputs={})
    assert hanging.calls == 3 and judge.guard.skipped == 1 and judge.name == "owned_garments"
    hanging.release.set()


def test_refused_connections_count_and_an_answer_resets_the_count() -> None:
    guard = JudgeGuard(timeout_s=5)
    refused = Guarded(Judge(error=requests.ConnectionError("refused")), guard)
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            refused(inputs={}, outputs={})
    assert Guarded(Judge("yes"), guard)(inputs={}, outputs={}) == "yes"
    assert guard.failures == 0 and guard.note() == ""


def test_garbage_answers_never_stop_the_judges() -> None:
    guard = JudgeGuard(timeout_s=5)
    garbage = Guarded(Judge(error=ValueError("not JSON: it depends on taste")), guard)
    for _ in range(5):
        with pytest.raises(ValueError):
            garbage(inputs={}, outputs={})
    assert guard.failures == 0 and guard.skipped == 0
