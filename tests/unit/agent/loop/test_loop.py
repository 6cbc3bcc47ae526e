"""run_once with fakes beside the real policy: timed steps, decisions with reasons, failures contained."""

import time

import pytest

from agent.actuate.dryrun import DryRunActuator
from agent.state.reading import CollectResult, Reading
from agent.config import build_config
from agent.forecast.holder import ModelHolder
from agent.forecast.heuristic import WindowQuantileForecaster
from agent.sessions.lifecycle import SessionManager
from agent.loop.agent_loop import AgentLoop
from agent.policy.limits import MIB
from agent.sessions.store import Session, SessionStore


class FakeCollector:
    """Each session burns `cpu[sid]` cores and holds `mem[sid]` bytes."""

    def __init__(self):
        self.cpu, self.mem, self.ns = {}, {}, {}
        self.t = 0.0

    def collect(self, cgroups):
        out = {}
        for sid in cgroups:
            self.ns[sid] = self.ns.get(sid, 0) + int(self.cpu.get(sid, 0.1) * 1e9)
            out[sid] = CollectResult(Reading(cpu_usage_ns=self.ns[sid], cpu_nr_periods=10, cpu_nr_throttled=0,
                                             mem_usage_bytes=self.mem.get(sid, 50 * MIB), mem_oom_kills=0,
                                             nr_procs=1))
        return out


class RecordingDetector:
    def __init__(self):
        self.calls = []

    def observe(self, now, sid, sample, cpu_limit=None):
        self.calls.append((now, sid, sample))
        return []

    def forget(self, sid):
        pass


def _loop(tmp_path, **anomaly):
    cfg = build_config({"agent": {"state_dir": str(tmp_path), "history_seconds": 60},
                        "policy": {"cooldown_down_seconds": 5, "young_samples": 2},
                        "anomaly": anomaly or {}, "http": {"listen": ""}}, {})
    actuator = DryRunActuator(check_alive=False)
    store = SessionStore(tmp_path)
    manager = SessionManager(actuator, store, cfg)
    holder = ModelHolder(WindowQuantileForecaster(10, 0.5, 0.99))
    loop = AgentLoop(cfg, FakeCollector(), holder, manager, (4.0, 8 * 1024 * MIB), detector=RecordingDetector())
    return loop, actuator, store


def _add(store, actuator, sid, t0):
    actuator.create(f"pspe/{sid}")
    store.save(Session(sid, f"pspe/{sid}", owned=False, started_at=t0))


def test_tick_times_every_step_and_raises_a_busy_session(tmp_path):
    loop, actuator, store = _loop(tmp_path)
    _add(store, actuator, "busy", 0.0)
    loop.collector.cpu["busy"] = 1.5
    reports = [loop.run_once(float(t)) for t in range(1, 6)]
    assert set(reports[-1].durations) == {"sync", "collect", "update", "forecast", "decide", "actuate",
                                          "anomaly", "record"}
    decisions = [d for r in reports for d in r.decisions]
    assert decisions and decisions[-1].new.cpu_limit >= 1.5
    assert all(d.reasons for d in decisions)
    assert actuator.read_limits("pspe/busy") == loop.runtimes["busy"].limits
    assert reports[0].started == ["busy"]


def test_the_status_snapshot_names_a_container_sessions_container_and_image(tmp_path):
    loop, actuator, store = _loop(tmp_path)
    _add(store, actuator, "proc", 0.0)
    actuator.create("docker/abc123")
    store.save(Session("box", "docker/abc123", owned=True, started_at=0.0, container="abc123",
                       image="pspe-busybox:1"))
    report = loop.run_once(1.0)
    assert (report.sessions["box"].container, report.sessions["box"].image) == ("abc123", "pspe-busybox:1")
    assert report.sessions["proc"].to_dict()["container"] == "" == report.sessions["proc"].to_dict()["image"]


def test_a_failing_step_is_counted_and_the_tick_goes_on(tmp_path):
    loop, actuator, store = _loop(tmp_path)
    _add(store, actuator, "s", 0.0)

    def boom(now, batch):
        raise RuntimeError("model exploded")

    loop.forecaster.predict = boom
    report = loop.run_once(1.0)
    report = loop.run_once(2.0)
    assert "record" in report.durations and "s" in report.sessions
    assert loop.metrics.tick_errors._value.get() >= 2


def test_a_session_removed_from_the_store_is_forgotten_with_its_profile(tmp_path):
    loop, actuator, store = _loop(tmp_path)
    _add(store, actuator, "gone", 0.0)
    for t in range(1, 4):
        loop.run_once(float(t))
    store.remove("gone", {"stopped_by": "cli"})
    report = loop.run_once(4.0)
    assert report.ended == ["gone"] and "gone" not in loop.runtimes
    ended = store.ended("gone")
    assert ended["stopped_by"] == "cli" and ended["samples"] == 2


def test_anomaly_detector_scores_every_session_every_stride_on_folded_samples(tmp_path):
    loop, actuator, store = _loop(tmp_path, sessions_per_tick=1, every_ticks=1)
    for sid in ("a", "b", "c"):
        _add(store, actuator, sid, 0.0)
    for t in range(1, 14):
        loop.run_once(float(t))
    calls = loop.detector.calls
    per_session = {sid: [c for c in calls if c[1] == sid] for sid in ("a", "b", "c")}
    for sid, cs in per_session.items():
        times = [c[0] for c in cs]
        assert len(times) >= 3 and all(b - a == 3 for a, b in zip(times, times[1:])), (sid, times)
    assert max(len(cs) for cs in per_session.values()) <= 5  # 12 samples each, scored every 3rd tick


def test_model_predictions_feed_the_detectors_learned_residuals(tmp_path):
    from agent.forecast.prediction import Prediction, ResourcePrediction

    class Learned:
        def __init__(self):
            self.expected = []

        def expect_prediction(self, sid, pred):
            self.expected.append((sid, pred.source))

    class Model:
        fallbacks_total = 0

        def __init__(self, source):
            self.source = source

        def predict(self, now, batch):
            return [Prediction(ResourcePrediction(0.1, 0.2), ResourcePrediction(1e8, 2e8), self.source, 10)
                    for _ in batch]

        def spec_for_steps(self):
            return holder.spec_for_steps()

    loop, actuator, store = _loop(tmp_path, every_ticks=1)
    holder = loop.forecaster
    loop.detector.learned = Learned()
    _add(store, actuator, "s", 0.0)
    loop.forecaster = Model("heuristic")
    for t in range(1, 4):
        loop.run_once(float(t))
    assert loop.detector.learned.expected == []  # only a model's range is a learned expectation
    loop.forecaster = Model("onnx:abc")
    loop.run_once(4.0)
    assert loop.detector.learned.expected == [("s", "onnx:abc")]


def test_a_swapped_model_with_another_step_gets_every_session_its_steps(tmp_path):
    """The forecaster's inputs are kept between ticks; a model with another step replaces every
    session's step aggregator once, sessions started after the swap get the new step at once."""
    from agent.features.spec import FeatureSpec

    loop, actuator, store = _loop(tmp_path)
    for sid in ("a", "b"):
        _add(store, actuator, sid, 0.0)
    for t in range(1, 4):
        loop.run_once(float(t))
    assert {rt.steps.step_seconds for rt in loop.runtimes.values()} == {300.0}
    heuristic = loop.forecaster.current
    seen = []

    class StepModel:   # a "model" with a 60 s step, answering with the heuristic
        spec = FeatureSpec(step_seconds=60.0)
        source, fallbacks_total = "onnx:step60", 0

        def predict(self, now, batch):
            seen.append(batch)
            return heuristic.predict(now, batch)

    loop.forecaster._install(StepModel())
    loop.run_once(4.0)
    _add(store, actuator, "c", 4.0)
    loop.run_once(5.0)
    loop.run_once(6.0)
    assert {sid: rt.steps.step_seconds for sid, rt in loop.runtimes.items()} == {"a": 60.0, "b": 60.0, "c": 60.0}
    for batch in seen:
        assert [inp.steps for inp in batch] == [loop.runtimes[sid].steps for sid in loop.runtimes][:len(batch)]
    assert seen[-1][0] is seen[-2][0]          # the same input object tick after tick
    loop.forecaster.revert()
    loop.run_once(7.0)
    assert {rt.steps.step_seconds for rt in loop.runtimes.values()} == {300.0}


def test_a_profile_covers_the_whole_life_not_the_last_minutes_and_keeps_the_end_reason(tmp_path):
    """A session that ran 841 s and peaked at 0.87 cores early: its ring (history_seconds = 60) has long
    forgotten the peak, its profile has not; the reason `stop` recorded travels with the profile."""
    loop, actuator, store = _loop(tmp_path)
    _add(store, actuator, "web", 0.0)
    for t in range(1, 842):
        loop.collector.cpu["web"] = 0.87 if 100 <= t < 200 else 0.01
        loop.run_once(float(t))
    store.remove("web", {"reason": "stopped"})
    report = loop.run_once(842.0)
    profile = report.profiles["web"]
    cpu = profile["metrics"]["cpu_cores"]
    assert cpu["peak"] == pytest.approx(0.87, rel=1e-6)
    assert cpu["p90"] > 0.5                        # 99 of 840 samples at 0.87: the life's p90 is the burst
    assert profile["reason"] == "stopped" and store.ended("web")["reason"] == "stopped"
    ages = profile["by_age"]
    assert set(ages) == {"0-5m", "5-30m"}          # 841 s: the first two age buckets
    assert ages["0-5m"]["cpu_cores"]["p90"] == pytest.approx(0.87, rel=0.03)
    assert ages["5-30m"]["cpu_cores"]["peak"] == pytest.approx(0.01, rel=0.03)
    assert ages["0-5m"]["cpu_cores"]["samples"] + ages["5-30m"]["cpu_cores"]["samples"] == profile["samples"]


def test_a_session_started_with_seeded_limits_keeps_them_as_its_young_floor(tmp_path):
    from agent.policy.limits import Limits
    loop, actuator, store = _loop(tmp_path)
    first = Limits(0.6, 0.6, 300 * MIB, 300 * MIB)
    actuator.create("pspe/seeded")
    store.save(Session("seeded", "pspe/seeded", owned=False, started_at=0.0, limits=first, first_limits=first,
                       seed=["cpu_limit set: profile app=web p90 at age 0-5 min (9 sessions) 0.52 + margin"]))
    _add(store, actuator, "plain", 0.0)
    loop.collector.cpu.update({"seeded": 0.01, "plain": 0.01})
    for t in range(1, 4):
        loop.run_once(float(t))
    assert loop.runtimes["seeded"].memo.young_floor == (0.6, 300 * MIB)
    assert loop.runtimes["plain"].memo.young_floor is None          # adopted: the configured minimum
    assert loop.runtimes["seeded"].limits.cpu_limit >= 0.6
