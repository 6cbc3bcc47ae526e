"""App metrics from a real MQTT client through Mosquitto into the agent's merged per-session map."""

from __future__ import annotations

import asyncio
import json
import secrets
import time

import aiomqtt
import pytest

from agent.bus.backoff import Backoff
from agent.bus.mqtt import AppMetricsMap, MqttAppSubscriber

pytestmark = pytest.mark.integration


async def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_device_metrics_reach_the_map_and_bad_payloads_are_counted(mqtt_broker):
    host_id = f"h-{secrets.token_hex(4)}"        # private topic space on the shared broker
    metrics = AppMetricsMap()
    sub = MqttAppSubscriber(*mqtt_broker, host_id, metrics, backoff=Backoff(0.05, 0.2))
    task = asyncio.ensure_future(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        async with aiomqtt.Client(*mqtt_broker[:1], port=mqtt_broker[1], identifier=f"dev-{host_id}") as device:
            await device.publish(f"pspe/{host_id}/web-1/app", json.dumps({"fps": 59.5, "latency_ms": 12}), qos=1)
            await device.publish(f"pspe/{host_id}/web-1/app", json.dumps({"fps": 30}), qos=1)
            await device.publish(f"pspe/{host_id}/web-2/app", json.dumps({"queue_depth": 4}), qos=1)
            await device.publish(f"pspe/{host_id}/web-1/app", b"{" + b" " * 10_000 + b"}", qos=1)   # oversized
            await device.publish(f"pspe/{host_id}/web-1/app", b"fps=60", qos=1)                     # malformed
            await device.publish(f"pspe/other-host/web-1/app", json.dumps({"fps": 1}), qos=1)       # not ours
        await wait_for(lambda: sub.counts["received"] >= 5)
        assert metrics("web-1") == {"fps": 30.0, "latency_ms": 12.0}
        assert metrics("web-2") == {"queue_depth": 4.0}
        assert sub.counts["merged"] == 3
        assert sub.counts["dropped_oversized"] == 1 and sub.counts["dropped_malformed"] == 1
        assert sub.counts["received"] == 5                # the other host's topic never reached us
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
