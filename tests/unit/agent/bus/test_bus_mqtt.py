"""App-metric payloads and topics (pure), and the merged per-session map the loop reads."""

from __future__ import annotations

import threading

import pytest

from agent.bus.mqtt import (AppMetricsMap, AppPayloadError, MqttAppSubscriber, app_topic, parse_app_payload,
                            parse_topic)


def test_a_json_object_of_numbers_parses():
    assert parse_app_payload(b'{"fps": 59.9, "latency_ms": 12, "queue.depth": 0}') == {
        "fps": 59.9, "latency_ms": 12.0, "queue.depth": 0.0}


@pytest.mark.parametrize("payload,reason", [
    (b"x" * 5000, "oversized"), (b"not json", "malformed"), (b"[1, 2]", "malformed"),
    (b'{"fps": "60"}', "malformed"), (b'{"fps": true}', "malformed"), (b'{"fps": NaN}', "malformed"),
    (b'{"fps": 1e999}', "malformed"), (b'{"bad name": 1}', "malformed"), (b'{"9x": 1}', "malformed"),
    (b'{' + b",".join(b'"m%d": 1' % i for i in range(65)) + b'}', "malformed")])
def test_bad_payloads_are_refused_with_a_reason(payload, reason):
    with pytest.raises(AppPayloadError) as e:
        parse_app_payload(payload)
    assert e.value.reason == reason


@pytest.mark.parametrize("topic", ["pspe/h2/s1/app", "pspe/h1/s1/other", "pspe/h1/s1", "pspe/h1/-x/app",
                                   "x/h1/s1/app", "pspe/h1/s1/app/more"])
def test_foreign_topics_are_refused(topic):
    with pytest.raises(AppPayloadError):
        parse_topic(topic, "h1")


def test_topic_gives_the_session():
    assert parse_topic("pspe/h1/web-1.a/app", "h1") == "web-1.a" and app_topic("h1") == "pspe/h1/+/app"


def test_messages_merge_into_the_latest_values_and_drops_are_counted():
    m = AppMetricsMap(max_age_s=30)
    sub = MqttAppSubscriber("127.0.0.1", 1883, "h1", m, owns_session=lambda s: s != "ghost")
    assert sub.handle("pspe/h1/s1/app", b'{"fps": 60, "lat": 10}', now=0.0) == "merged"
    assert sub.handle("pspe/h1/s1/app", b'{"fps": 30}', now=1.0) == "merged"
    assert sub.handle("pspe/h1/s1/app", b"{" + b" " * 5000 + b"}", now=1.0) == "dropped_oversized"
    assert sub.handle("pspe/h1/ghost/app", b'{"fps": 1}', now=1.0) == "dropped_unknown_session"
    assert sub.handle("pspe/h1/s1/app", b'{"fps": "x"}', now=1.0) == "dropped_malformed"
    assert m("s1") == {"fps": 30.0, "lat": 10.0} and m("s2") == {}
    assert sub.counts["merged"] == 2 and sub.counts["dropped_oversized"] == 1 and sub.counts["received"] == 5


def test_values_expire_per_metric_when_a_device_goes_quiet():
    m = AppMetricsMap(max_age_s=10)
    m.merge("s1", {"fps": 60, "lat": 5}, now=0.0)
    m.merge("s1", {"fps": 50}, now=8.0)
    assert m.expire(now=15.0) == 1 and m("s1") == {"fps": 50.0}
    assert m.expire(now=30.0) == 1 and m.sessions() == []


def test_reads_from_another_thread_always_see_whole_dicts():
    m = AppMetricsMap()
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            try:
                d = m("s1")
                assert d == {} or set(d) == {"a", "b"}
            except Exception as e:  # noqa: BLE001 - any failure is the test's finding
                errors.append(e)

    th = threading.Thread(target=reader)
    th.start()
    for i in range(20000):
        m.merge("s1", {"a": i, "b": i}, now=float(i))
    stop.set()
    th.join()
    assert errors == []


def test_from_url_reads_credentials():
    sub = MqttAppSubscriber.from_url("mqtt://agent-h1:pw@broker.local:1884", "h1", AppMetricsMap())
    assert (sub.hostname, sub.port, sub.username, sub.password) == ("broker.local", 1884, "agent-h1", "pw")
