"""Seeded start: which profile class a new session gets, and the first limits it gives (pure)."""

import pytest

from agent.config import build_config
from agent.policy.limits import GIB, MIB, Bounds
from agent.policy.seed import ProfileClasses, ProfileClassesError, choose_class, seed_limits

POLICY = build_config({}).policy


def classes_of(*specs):
    """specs: (labels, sessions, cpu p50, cpu p90, mem p50, mem peak)."""
    return ProfileClasses.from_dict({
        "format": "pspe-profile-classes", "format_version": 1, "version": 7, "created_at": 1.0,
        "classes": [{"labels": labels, "sessions": n, "ages": {"0-5m": {
            "cpu_cores": {"p50": c50, "p90": c90, "peak": c90 * 1.5, "sessions": n},
            "mem_bytes": {"p50": m50, "p90": mpk * 0.9, "peak": mpk, "sessions": n}}}}
            for labels, n, c50, c90, m50, mpk in specs]})


WEB = ({"app": "web"}, 40, 0.3, 0.61, 256 * MIB, 512 * MIB)
WEB_ANN = ({"app": "web", "user": "ann"}, 6, 0.5, 1.2, 300 * MIB, 700 * MIB)
WEB_BOB = ({"app": "web", "user": "bob"}, 2, 2.0, 3.0, GIB, 2 * GIB)


def test_the_most_specific_class_with_enough_sessions_wins():
    classes = classes_of(WEB, WEB_ANN, WEB_BOB)
    assert choose_class(classes, {"app": "web", "user": "ann", "host": "h1"}, 5).labels == WEB_ANN[0]
    assert choose_class(classes, {"app": "web", "user": "bob"}, 5).labels == WEB[0]   # bob's: 2 sessions
    assert choose_class(classes, {"app": "web", "user": "bob"}, 2).labels == WEB_BOB[0]
    assert choose_class(classes, {"app": "db"}, 1) is None                             # none: the minimum
    assert choose_class(None, {"app": "web"}, 1) is None


def test_a_tie_in_specificity_goes_to_the_class_with_more_sessions():
    a = ({"app": "web"}, 10, 0.1, 0.2, MIB, MIB)
    b = ({"team": "x"}, 30, 0.1, 0.2, MIB, MIB)
    assert choose_class(classes_of(a, b), {"app": "web", "team": "x"}, 5).labels == {"team": "x"}


def test_seeded_limits_come_from_the_first_age_bucket_with_margins_inside_the_bounds():
    web = choose_class(classes_of(WEB), {"app": "web"}, 5)
    limits, reasons = seed_limits(web, Bounds(cpu_min=0.05, cpu_max=16, mem_min=32 * MIB, mem_max=16 * GIB), POLICY)
    assert limits.cpu_limit == pytest.approx(0.61 * (1 + POLICY.cpu_margin))
    assert limits.cpu_request == pytest.approx(0.3 * (1 + POLICY.cpu_margin))
    assert limits.mem_limit == int(512 * MIB * (1 + POLICY.mem_margin) + POLICY.mem_headroom_bytes)
    assert limits.mem_request == int(256 * MIB * (1 + POLICY.mem_margin))
    assert reasons[0] == "cpu_limit set: profile app=web p90 at age 0-5 min (40 sessions) 0.61 + margin"
    tight, _ = seed_limits(web, Bounds(cpu_min=0.05, cpu_max=0.5, mem_min=32 * MIB, mem_max=256 * MIB), POLICY)
    assert tight.cpu_limit == 0.5 and tight.mem_limit == 256 * MIB and tight.cpu_request <= tight.cpu_limit


def test_a_class_without_an_early_age_bucket_seeds_nothing():
    classes = ProfileClasses.from_dict({"format": "pspe-profile-classes", "format_version": 1, "version": 1,
                                        "created_at": 0.0, "classes": [{"labels": {"app": "x"}, "sessions": 9,
                                                                        "ages": {"2h+": {}}}]})
    assert seed_limits(classes.classes[0], Bounds(), POLICY) is None


@pytest.mark.parametrize("bad, why", [
    ({"format": "something-else"}, "not a pspe-profile-classes"),
    ({"format": "pspe-profile-classes", "format_version": 2}, "format version 2"),
    ({"format": "pspe-profile-classes", "format_version": 1, "version": 1, "created_at": 0, "classes": [{}]},
     "malformed"),
    ([1, 2], "not a pspe-profile-classes"),
])
def test_an_artefact_of_another_kind_or_version_is_refused_with_the_reason(bad, why):
    with pytest.raises(ProfileClassesError, match=why):
        ProfileClasses.from_dict(bad)


def test_an_artefact_round_trips():
    classes = classes_of(WEB, WEB_ANN)
    assert ProfileClasses.from_dict(classes.to_dict()) == classes
