import asyncio

import numpy as np
import pytest

from agent.observe.http import AgentHttpServer, health, parse_listen
from agent.policy.limits import Limits
from agent.observe.metrics import AgentMetrics
from agent.sessions.profile import build_profile, summarize_metric
from agent.state.samples import Sample, SessionState


def test_health_fails_when_loop_stalls():
    assert health(None, started_at=0, now=5, stall_seconds=10)[0]
    assert not health(None, started_at=0, now=11, stall_seconds=10)[0]
    assert health(100.0, started_at=0, now=105, stall_seconds=10)[0]
    ok, why = health(100.0, started_at=0, now=111, stall_seconds=10)
    assert not ok and "stalled" in why


def test_parse_listen():
    assert parse_listen("127.0.0.1:9477") == ("127.0.0.1", 9477)
    assert parse_listen(":80") == ("127.0.0.1", 80)


async def _get(port, path):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    return data.decode()


async def test_http_endpoints_serve_metrics_health_status():
    m = AgentMetrics()
    m.ticks.inc()
    healthy = [True]
    srv = AgentHttpServer(m, lambda: (healthy[0], "why"), lambda: {"sessions": []})
    await srv.start("127.0.0.1", 0)
    try:
        assert "pspe_loop_ticks_total 1.0" in await _get(srv.port, "/metrics")
        assert (await _get(srv.port, "/healthz")).startswith("HTTP/1.1 200")
        healthy[0] = False
        assert (await _get(srv.port, "/healthz")).startswith("HTTP/1.1 503")
        assert '"sessions": []' in await _get(srv.port, "/status")
        assert (await _get(srv.port, "/nope")).startswith("HTTP/1.1 404")
    finally:
        await srv.close()


def test_metric_summary_and_profile():
    v = np.array([1.0, 1.0, 1.0, 5.0, np.nan])
    t = np.arange(5.0)
    s = summarize_metric(v, t)
    assert s["peak"] == 5.0 and s["p50"] == 1.0 and s["burstiness"] > 1
    st = SessionState("a", 8, started_at=0.0)
    for i in range(4):
        st.push(Sample(t=float(i + 1), values={"cpu_cores": 0.5, "mem_bytes": 100.0 * (i + 1)}))
    p = build_profile(st, Limits(0.5, 1, 1, 2), {"app": "x"}, changes=3, ended_at=10.0)
    assert p["duration_s"] == 10.0 and p["limit_changes"] == 3 and p["labels"] == {"app": "x"}
    assert p["metrics"]["mem_bytes"]["growth_per_s"] == pytest.approx(100.0)
    assert "net_rx_bps" not in p["metrics"]  # never measured: absent, not zero
