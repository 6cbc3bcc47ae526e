"""Typed alerts: each fires on a session made to show it, and a replayed normal session stays silent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from agent.anomaly import rules as anomaly_rules
from agent.anomaly.detector import AnomalyDetector
from agent.anomaly.alert import (ANOMALY, APP_DEGRADATION, IO_STORM, KINDS, MEMORY_LEAK, NETWORK_BURST,
                                 RUNAWAY_CPU, Alert)
from agent.anomaly.rate_limit import AlertLimiter
from agent.state.samples import Sample
from tests.paths import SHARED_DATA

MIB = 1024.0**2
N, ONSET = 2400, 1500          # ticks of 1 s; the anomaly starts well after the detector has learnt
BITBRAINS = SHARED_DATA / "bitbrains-rnd" / "2013-7" / "1.csv.gz"


def normal_session(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    r = np.random.default_rng(seed)

    def around(level: float, rel: float) -> np.ndarray:
        return np.abs(level * (1.0 + rel * r.standard_normal(N)))

    values = {
        "cpu_cores": around(0.3, 0.15), "cpu_throttled": np.abs(0.01 * r.standard_normal(N)),
        "mem_bytes": around(500 * MIB, 0.01), "disk_read_bps": around(100e3, 0.3),
        "disk_write_bps": around(200e3, 0.3), "disk_read_iops": around(20, 0.15),
        "disk_write_iops": around(30, 0.1), "net_rx_bps": around(50e3, 0.3), "net_tx_bps": around(40e3, 0.3),
    }
    app = {"fps": 60.0 + 2.0 * r.standard_normal(N), "latency_ms": around(20.0, 0.1)}
    return values, app


def replay(values, app, n: int = N, detector: AnomalyDetector | None = None, **observe) -> list[tuple[int, Alert]]:
    d = detector or AnomalyDetector()
    out = []
    for i in range(n):
        s = Sample(t=float(i), values={k: float(v[i]) for k, v in values.items()},
                   app={k: float(v[i]) for k, v in app.items()})
        out += [(i, a) for a in d.observe(float(i), "s1", s, **observe)]
    return out


def kinds(alerts) -> set[str]:
    return {a.kind for _, a in alerts}


def first(alerts, kind: str) -> tuple[int, Alert]:
    return next((i, a) for i, a in alerts if a.kind == kind)


def test_the_synthetic_normal_session_raises_nothing():
    assert replay(*normal_session()) == []


def test_runaway_cpu_pinned_at_the_cap():
    values, app = normal_session()
    values["cpu_cores"][ONSET:] = 1.97 + 0.005 * np.random.default_rng(1).standard_normal(N - ONSET)
    values["cpu_throttled"][ONSET:] = 0.7
    alerts = replay(values, app)
    i, a = first(alerts, RUNAWAY_CPU)
    assert ONSET < i <= ONSET + 120
    assert a.metric == "cpu_cores" and a.expected == pytest.approx(0.3, rel=0.1)
    assert a.seen == pytest.approx(1.97, rel=0.01) and a.window_seconds == pytest.approx(120.0)
    assert "pinned" in a.message


def test_runaway_cpu_a_miner_without_throttling():
    values, app = normal_session()
    values["cpu_cores"][ONSET:] = 3.0 + 0.01 * np.random.default_rng(1).standard_normal(N - ONSET)
    _, a = first(replay(values, app), RUNAWAY_CPU)
    assert a.seen == pytest.approx(3.0, rel=0.01) and "10x" in a.message


def test_memory_leak_steady_growth():
    values, app = normal_session()
    values["mem_bytes"][ONSET:] += np.arange(N - ONSET) * 0.4 * MIB
    i, a = first(replay(values, app), MEMORY_LEAK)
    assert ONSET + 250 < i <= ONSET + 600      # block means (older than the fine tier) see the trend a bit sooner
    assert a.metric == "mem_bytes" and a.seen > a.expected + 100 * MIB and a.window_seconds == 600.0


def test_io_storm():
    values, app = normal_session()
    values["disk_write_bps"][ONSET:ONSET + 90] = 60e6
    values["disk_write_iops"][ONSET:ONSET + 90] = 3000.0
    i, a = first(replay(values, app), IO_STORM)
    assert ONSET < i <= ONSET + 30
    assert a.metric in ("disk_write_bps", "disk_write_iops") and a.seen > 5 * a.expected


def test_network_burst():
    values, app = normal_session()
    values["net_tx_bps"][ONSET:ONSET + 30] = 30e6
    i, a = first(replay(values, app), NETWORK_BURST)
    assert ONSET < i <= ONSET + 10
    assert a.metric == "net_tx_bps" and a.seen >= 10 * a.expected and a.seen > MIB and "outbound" in a.message


def test_app_degradation_fps_collapse_and_latency_rise():
    values, app = normal_session()
    app["fps"][ONSET:ONSET + 60] = 18.0
    _, a = first(replay(values, app), APP_DEGRADATION)
    assert a.metric == "app:fps" and a.seen == pytest.approx(18.0) and a.expected == pytest.approx(60.0, rel=0.05)
    values, app = normal_session(seed=3)
    app["latency_ms"][ONSET:ONSET + 60] = 90.0
    _, a = first(replay(values, app), APP_DEGRADATION)
    assert a.metric == "app:latency_ms" and "rose" in a.message


def test_generic_anomaly_when_several_metrics_go_wrong_together():
    values, app = normal_session()
    for m in ("cpu_cores", "net_rx_bps", "net_tx_bps"):      # a hung application: no work, no traffic
        values[m][ONSET:ONSET + 40] = 0.0
    alerts = replay(values, app)
    i, a = first(alerts, ANOMALY)
    assert ONSET <= i <= ONSET + 10
    assert a.metric in ("cpu_cores", "net_rx_bps", "net_tx_bps") and a.seen == 0.0
    assert kinds(alerts) == {ANOMALY}
    assert len(alerts) == 1                                  # one alert for the episode, not one per metric


def read_bitbrains_slice(rows: int) -> dict[str, np.ndarray]:
    from training.data.bitbrains import read_trace

    assert BITBRAINS.exists(), f"shared data missing: {BITBRAINS}"
    tr = read_trace(BITBRAINS)
    return {"cpu_cores": tr.cpu_cores_used[:rows], "mem_bytes": tr.mem_used_bytes[:rows],
            "disk_read_bps": tr.disk_read_bps[:rows], "disk_write_bps": tr.disk_write_bps[:rows],
            "net_rx_bps": tr.net_rx_bps[:rows], "net_tx_bps": tr.net_tx_bps[:rows]}


def test_a_replayed_real_vm_stays_silent():
    """A real business-critical VM (Bitbrains Rnd VM 1, its first 2000 samples) replayed one per tick."""
    values = read_bitbrains_slice(2000)
    assert replay(values, {}, n=2000) == []


def test_every_kind_is_named_and_alerts_serialise_to_json():
    assert set(KINDS) == {RUNAWAY_CPU, MEMORY_LEAK, IO_STORM, NETWORK_BURST, APP_DEGRADATION, ANOMALY}
    a = Alert(ANOMALY, "s", 1.0, "cpu_cores", 0.9, math.nan, 2.0, 10.0, "m")
    d = json.loads(json.dumps(a.to_dict()))
    assert d["expected"] is None and d["seen"] == 2.0 and d["kind"] == "anomaly"
    with pytest.raises(Exception):
        a.score = 0.1  # frozen


def test_limiter_dedupes_per_kind_and_metric_and_caps_per_hour():
    lim = AlertLimiter(dedupe_seconds=600, max_per_hour=3)
    mk = lambda t, kind=IO_STORM, metric="disk_write_bps": Alert(kind, "s", t, metric, 1, 0, 0, 0, "")  # noqa: E731
    assert lim.admit(mk(0.0))
    assert not lim.admit(mk(100.0))                          # same kind and metric: deduplicated
    assert lim.admit(mk(100.0, metric="disk_read_bps"))      # another metric is another alert
    assert lim.admit(mk(700.0))                              # after the dedupe period
    assert not lim.admit(mk(800.0, kind=MEMORY_LEAK))        # fourth within the hour: rate-limited
    assert lim.admit(mk(3700.0, kind=MEMORY_LEAK))
    assert (lim.deduped, lim.rate_limited) == (1, 1)
    assert lim.admit(mk(5000.0, kind=ANOMALY, metric="a"))
    assert not lim.admit(mk(5001.0, kind=ANOMALY, metric="b"))   # generic: one per session episode


class FakeResiduals:
    """A learned model that knows what the CPU should be each tick, to within 0.01 cores."""

    def __init__(self, expected: np.ndarray):
        self.expected = expected
        self.forgotten = []

    def residuals(self, session_id, sample):
        return {"cpu_cores": (sample.get("cpu_cores") - self.expected[int(sample.t)]) / 0.01}

    def forget(self, session_id):
        self.forgotten.append(session_id)


def test_the_learned_hook_adds_evidence_and_is_forgotten_with_the_session():
    values, app = normal_session()
    model = FakeResiduals(values["cpu_cores"].copy())
    values["cpu_cores"][ONSET:ONSET + 40] += 0.03      # well inside the noise: only the model can tell
    plain, learned = AnomalyDetector(), AnomalyDetector(learned=model)
    replay(values, app, n=ONSET + 40, detector=plain)
    replay(values, app, n=ONSET + 40, detector=learned)
    with_model = learned._sessions["s1"].scorer.streams["cpu_cores"].peak(40)
    without = plain._sessions["s1"].scorer.streams["cpu_cores"].peak(40)
    assert without < 0.6 <= with_model
    learned.forget("s1")
    assert learned.scores("s1") is None and model.forgotten == ["s1"]


def test_forecast_residuals_score_the_next_sample_against_the_last_forecast():
    from agent.anomaly.learned import ForecastResiduals
    from agent.forecast.prediction import Prediction, ResourcePrediction

    fr = ForecastResiduals(upper_quantile=0.9)
    fr.expect_prediction("s", Prediction(ResourcePrediction(1.0, 1.0 + 1.2816), ResourcePrediction(100.0, 100.0),
                                         "heuristic", 50))
    z = fr.residuals("s", Sample(t=1.0, values={"cpu_cores": 3.0, "mem_bytes": 101.0}))
    assert z["cpu_cores"] == pytest.approx(2.0, rel=1e-3)
    assert z["mem_bytes"] == pytest.approx(1.0 / (100.0 * 0.01 / 1.0))   # floored spread: 1 % of the centre
    assert fr.residuals("s", Sample(t=2.0, values={"cpu_cores": 3.0})) == {}   # a forecast is used once


def test_bad_input_never_breaks_the_detector():
    d = AnomalyDetector()
    for i in range(50):
        v = [math.inf, None, "x", -1.0, math.nan][i % 5]
        assert d.observe(float(i), "s", Sample(t=float(i), values={"cpu_cores": v}, app={"fps": v})) == []
    assert d.observe(49.0, "s", Sample(t=49.0, values={})) == []      # time did not advance: dropped
    assert d.dropped_samples == 1


def test_a_failing_rule_is_counted_and_the_others_still_run(monkeypatch):
    def broken(view):
        raise RuntimeError("boom")

    monkeypatch.setattr(anomaly_rules, "TYPED_RULES", (broken,) + anomaly_rules.TYPED_RULES)
    import agent.anomaly.detector as anomaly_mod

    monkeypatch.setattr(anomaly_mod, "TYPED_RULES", anomaly_rules.TYPED_RULES)
    values, app = normal_session()
    values["net_tx_bps"][ONSET:ONSET + 30] = 30e6
    d = AnomalyDetector()
    alerts = replay(values, app, detector=d)
    assert NETWORK_BURST in kinds(alerts)
    assert d._sessions["s1"].rule_errors["broken"] == N


def test_from_config_takes_the_agent_tick_as_the_first_guess_of_a_session_tick():
    from agent.config import build_config

    d = AnomalyDetector.from_config(build_config({"agent": {"tick_seconds": 5.0}}, env={}))
    assert d.default_tick_seconds == 5.0
