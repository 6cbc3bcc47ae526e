"""Session checkpoints: a restarted agent goes on with each re-adopted session's history and memory."""

import pickle

import numpy as np

from agent.features.downsample import StepAggregator
from agent.features.spec import FeatureSpec
from agent.loop.checkpoint import MAGIC, SPREAD_TICKS
from agent.sessions.store import Session
from agent.state.samples import Sample, SessionState
from tests.unit.agent.loop.test_loop import _add, _loop

STEP = 300.0
END = int(STEP) + SPREAD_TICKS + 5   # one model step completed, and every session's turn to save


def _run(loop, start, end, cpu=0.6):
    reports = []
    for t in range(start, end):
        loop.collector.cpu["s"] = cpu
        reports.append(loop.run_once(float(t)))
    return reports


def test_a_restarted_loop_goes_on_with_the_sessions_history_and_memory(tmp_path):
    first, actuator, store = _loop(tmp_path)
    _add(store, actuator, "s", 0.0)
    _run(first, 1, END)
    before = first.runtimes["s"]
    assert first.metrics.checkpoints.labels("saved")._value.get() >= 1
    assert (tmp_path / "runtime" / "s.ckpt").stat().st_mode & 0o777 == 0o600
    started = before.memo.started_at

    second, _, _ = _loop(tmp_path)                              # the agent restarted: same state dir
    second.manager.actuator = second.actuator = actuator
    reports = _run(second, END + 10, END + 15)
    rt = second.runtimes["s"]
    assert second.metrics.checkpoints.labels("restored")._value.get() == 1
    assert rt.memo.started_at == started                        # the memory cap's warm-up is not restarted
    assert rt.state.samples_seen > STEP                         # restored (fresh: 4), so never young again
    assert rt.steps.steps_completed >= 1 and len(rt.steps) >= 1
    assert rt.life.histogram("cpu_cores").n > STEP
    reasons = [r for rep in reports for d in rep.decisions for r in d.reasons]
    assert not any("young" in r for r in reasons), reasons


def test_a_session_that_ends_takes_its_checkpoint_with_it(tmp_path):
    loop, actuator, store = _loop(tmp_path)
    _add(store, actuator, "s", 0.0)
    _run(loop, 1, END)
    assert (tmp_path / "runtime" / "s.ckpt").exists()
    store.remove("s", {"reason": "stopped"})
    loop.run_once(float(END + 10))
    assert not (tmp_path / "runtime" / "s.ckpt").exists()


def test_a_stale_foreign_or_broken_checkpoint_is_refused_and_the_session_starts_fresh(tmp_path):
    loop, actuator, store = _loop(tmp_path)
    _add(store, actuator, "s", 0.0)
    _run(loop, 1, END)
    path = tmp_path / "runtime" / "s.ckpt"
    good = path.read_bytes()
    session = store.get("s")
    checkpoints = loop.checkpoints
    assert checkpoints.load(session, float(END + 10)) is not None
    cases = {
        "another session of the name": (good, Session("s", "pspe/s", owned=False, started_at=5.0), float(END + 10)),
        "too old": (good, session, float(END + 10) + 8 * 86400),
        "broken": (MAGIC + b"\x80\x05garbage", session, float(END + 10)),
        "another format": (b"{}", session, float(END + 10)),
    }
    for why, (body, who, now) in cases.items():
        path.write_bytes(body)
        assert checkpoints.load(who, now) is None, why
        assert not path.exists(), why                            # removed: it will not be tried again
    assert loop.metrics.checkpoints.labels("refused")._value.get() == len(cases)


def test_a_state_and_its_steps_work_after_a_round_trip():
    """The rings' column views are rebuilt on load: writes after a restore land where reads look."""
    spec = FeatureSpec(window=4, step_seconds=10.0)
    state, steps = SessionState("s", 8, started_at=0.0), StepAggregator.for_spec(spec)
    for t in range(1, 31):
        sample = Sample(t=float(t), values={"cpu_cores": float(t), "mem_bytes": 1e9})
        state.push(sample)
        steps.add(sample)
    state, steps = pickle.loads(pickle.dumps((state, steps)))
    assert steps.layout is StepAggregator.for_spec(spec).layout    # interned again: batches by identity
    for t in range(31, 41):
        sample = Sample(t=float(t), values={"cpu_cores": float(t), "mem_bytes": 1e9})
        state.push(sample)
        steps.add(sample)
    assert state.times.last()[-1] == 40.0 and state.window("cpu_cores")[-1] == 40.0
    assert state.samples_seen == 40
    assert steps.times.last()[-1] == 30.0 and steps.buffers["cpu_cores"].last()[-1] == np.mean(np.arange(30, 40))
