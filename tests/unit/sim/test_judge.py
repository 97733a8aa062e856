"""The simulator as an LLM judge: it reads MLflow's judge prompt and answers by rule; the
bad-judge profile gets it wrong on purpose."""

from __future__ import annotations

import json
import random

from dresscode.sim import judge
from dresscode.sim.config import PROFILES, ServedModel
from dresscode.sim.protocol import ChatRequest

SCHEMA = {
    "type": "object",
    "properties": {"result": {"type": "boolean"}, "rationale": {"type": "string"}},
    "required": ["result", "rationale"],
}
WARDROBE = [
    {
        "item_id": "t",
        "category": "top",
        "subcategory": "t-shirt",
        "warmth": "light",
        "color_names": ["white"],
    }
]


def request(criterion: str, outputs: dict, profile: str = "perfect") -> ChatRequest:
    system = f"Your task: Criterion: {criterion}\nAnswer true or false."
    user = f"outputs: {json.dumps(outputs)}\ninputs: {json.dumps({'wardrobe': WARDROBE})}"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return ChatRequest(
        model=ServedModel("judge", PROFILES[profile]),
        messages=messages,
        schema=SCHEMA,
        json_mode=True,
        prompt_text=f"{system}\n{user}",
    )


def verdicts(criterion: str, outputs: dict, profile: str = "perfect", n: int = 1) -> list:
    req = request(criterion, outputs, profile)
    answers = [judge.verdict(req, criterion, random.Random(i)) for i in range(n)]
    return [json.loads(a)["result"] if a.startswith("{") else None for a in answers]


def test_judge_requests_are_told_apart_from_stylist_requests() -> None:
    assert judge.criterion(request("owned_garments", {})) == "owned_garments"
    stylist = ChatRequest(
        model=ServedModel("m", PROFILES["perfect"]),
        messages=[],
        schema={"type": "object", "properties": {"outfits": {}}},
    )
    assert judge.criterion(stylist) is None


def test_a_sound_judge_finds_the_unowned_garment_and_the_insult() -> None:
    honest = {"outfits": [{"item_ids": ["t"], "reason": "Your white t-shirt."}], "notes": ""}
    lying = {"outfits": [{"item_ids": ["t"], "reason": "With your boots."}], "notes": ""}
    rude = {"outfits": [{"item_ids": ["t"], "reason": "Only an idiot would not."}], "notes": ""}
    assert verdicts("owned_garments", honest) == [True]
    assert verdicts("owned_garments", lying) == [False]
    assert verdicts("safe_language", rude) == [False]
    assert verdicts("safe_language", honest) == [True]


def test_the_bad_judge_flips_verdicts_and_sometimes_answers_prose() -> None:
    lying = {"outfits": [{"item_ids": ["t"], "reason": "With your boots."}], "notes": ""}
    answers = verdicts("owned_garments", lying, profile="bad-judge", n=200)
    assert 60 < answers.count(True) < 140  # about half flipped to "owned"
    assert 5 < answers.count(None) < 40  # about one in ten not JSON
