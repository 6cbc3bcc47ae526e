"""PolicyMemo: learning which changes took effect, refused shrinks, checkpointing."""

import json
import math

from agent.policy.limits import MIB, Limits
from agent.policy.decide import PolicyMemo

A = Limits(cpu_request=0.5, cpu_limit=1.0, mem_request=256 * MIB, mem_limit=512 * MIB, cpu_burst=1.0)


def test_fresh_memo_records_no_change_for_limits_found_in_force():
    memo = PolicyMemo()
    memo.observe(A, now=100.0)                  # re-adopted session: limits were there before us
    assert memo.last_up == {} and memo.last_down == {} and memo.changes == 0
    assert memo.seen == A and memo.decided_at == 100.0


def test_first_limits_after_unknown_count_as_raised_at_the_decision():
    memo = PolicyMemo()
    memo.observe(None, now=10.0)                # first decision: nothing known, all fields set
    memo.observe(A, now=11.0)
    assert memo.last_up == {"cpu_request": 10.0, "cpu_limit": 10.0, "mem_request": 10.0, "mem_limit": 10.0}
    assert memo.changes == 4


def test_change_is_dated_to_the_previous_decision_with_its_direction():
    memo = PolicyMemo()
    memo.observe(A, now=10.0)
    b = Limits(cpu_request=0.5, cpu_limit=2.0, mem_request=256 * MIB, mem_limit=256 * MIB, cpu_burst=2.0)
    memo.observe(b, now=15.0)
    assert memo.last_up == {"cpu_limit": 10.0}
    assert memo.last_down == {"mem_limit": 10.0}
    assert memo.last_change("cpu_limit") == 10.0 and memo.last_change("cpu_request") is None


def test_unchanged_limits_or_read_back_rounding_are_not_changes():
    memo = PolicyMemo()
    memo.observe(A, now=10.0)
    memo.observe(Limits(0.5, 1.0004, 256 * MIB, 512 * MIB + 100, cpu_burst=0.0), now=11.0)
    assert memo.changes == 0 and memo.last_up == {} and memo.last_down == {}


def test_failed_apply_is_no_change():
    memo = PolicyMemo()
    memo.observe(A, now=10.0)
    memo.observe(A, now=11.0)                   # the loop kept A in force: the apply failed
    assert memo.changes == 0


def test_last_change_is_the_later_of_up_and_down():
    memo = PolicyMemo(last_up={"mem_limit": 5.0}, last_down={"mem_limit": 9.0})
    assert memo.last_change("mem_limit") == 9.0


def test_shrink_refused_records_the_time_with_aliases():
    memo = PolicyMemo()
    memo.shrink_refused(42.0, "mem_limit")
    assert memo.refused_at == {"mem_limit": 42.0}
    for alias in ("mem", "memory"):
        memo = PolicyMemo()
        memo.shrink_refused(7, alias)
        assert memo.refused_at == {"mem_limit": 7.0}
    memo = PolicyMemo()
    memo.shrink_refused(8.0)                    # mem_limit by default
    assert memo.refused_at == {"mem_limit": 8.0}


def test_shrink_refused_never_raises_on_junk():
    memo = PolicyMemo()
    for now, resource in ((math.nan, "mem_limit"), (None, "mem_limit"), ("x", "mem"), (1.0, "disk"),
                          (1.0, None)):
        memo.shrink_refused(now, resource)       # type: ignore[arg-type]
    assert memo.refused_at == {}


def test_memo_round_trips_through_json():
    memo = PolicyMemo(last_up={"cpu_limit": 1.0}, last_down={"mem_limit": 2.0},
                      refused_at={"mem_limit": 3.0}, seen=A, decided_at=4.0, changes=5)
    again = PolicyMemo.from_dict(json.loads(json.dumps(memo.to_dict())))
    assert again == memo
    assert PolicyMemo.from_dict({}) == PolicyMemo()


def test_shrink_refused_ignores_a_non_string_resource():
    memo = PolicyMemo()
    memo.shrink_refused(1.0, ["mem_limit"])     # type: ignore[arg-type]
    assert memo.refused_at == {}
