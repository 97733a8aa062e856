"""The canary split (by user) and the shadow sample (by request): stable, and on target."""

from __future__ import annotations

import pytest

from dresscode.serve import routing

USERS = [f"user-{n:05d}" for n in range(10_000)]


@pytest.mark.parametrize("share", [0.01, 0.1, 0.25, 0.5, 0.9])
def test_the_canary_split_over_10000_users_is_within_2_percent_of_the_setting(share: float) -> None:
    on_candidate = sum(
        routing.variant_for(u, share, candidate_available=True) == "candidate" for u in USERS
    )
    assert abs(on_candidate / len(USERS) - share) <= 0.02


def test_a_user_stays_on_the_same_variant_and_a_larger_share_only_adds_users() -> None:
    def canary(share: float) -> set[str]:
        return {
            u
            for u in USERS
            if routing.variant_for(u, share, candidate_available=True) == "candidate"
        }

    assert canary(0.2) == canary(0.2)  # no randomness: the same users every time
    assert canary(0.1) < canary(0.2) < canary(0.3)  # raising the share never moves anyone back
    assert canary(0.0) == set() and canary(1.0) == set(USERS)


def test_without_a_candidate_everyone_gets_production() -> None:
    assert {routing.variant_for(u, 1.0, candidate_available=False) for u in USERS} == {"production"}


def test_the_shadow_samples_requests_on_target_and_independently_of_the_canary() -> None:
    requests = [f"{n:032x}" for n in range(10_000)]
    sampled = {r for r in requests if routing.shadowed(r, 0.1)}
    assert abs(len(sampled) / len(requests) - 0.1) <= 0.02
    # Different salts: the canary's users (hashed as ids) are not the shadow's sample.
    as_users = {
        r for r in requests if routing.variant_for(r, 0.1, candidate_available=True) == "candidate"
    }
    assert len(sampled & as_users) < 0.25 * len(sampled)
