import pytest

from agent.policy.limits import Bounds, Limits
from agent.sessions.store import Session, SessionError, SessionStore, validate_name


def _session(name="web-1"):
    return Session(name, f"pspe/{name}", True, 10.0, Bounds(), Limits(0.5, 1.0, 1 << 27, 1 << 28, 1.0),
                   {"app": "web"}, 1234, ["sleep", "1"])


def test_round_trip_and_ids(tmp_path):
    store = SessionStore(tmp_path)
    store.save(_session())
    assert store.ids() == {"web-1"} and store.has("web-1")
    got = store.get("web-1")
    assert got == _session()
    assert store.load_all() == [_session()]


def test_remove_keeps_final_profile_and_merges(tmp_path):
    store = SessionStore(tmp_path)
    store.save(_session())
    store.remove("web-1", {"stopped_by": "cli"})
    store.merge_ended("web-1", {"samples": 5})
    assert store.ids() == set() and store.get("web-1") is None
    assert store.ended("web-1") == {"stopped_by": "cli", "samples": 5}


def test_torn_record_is_skipped(tmp_path):
    store = SessionStore(tmp_path)
    store.save(_session())
    (store.dir / "bad.json").write_text("{not json")
    assert [s.session_id for s in store.load_all()] == ["web-1"]
    assert store.get("bad") is None


@pytest.mark.parametrize("name", ["", "-x", "a/b", "x" * 64, "../etc"])
def test_bad_names_rejected(name):
    with pytest.raises(SessionError):
        validate_name(name)
