"""Telemetry ingest: batches into the store; malformed, oversized and stray messages dropped."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from controller.mqtt.ingest import TelemetryIngest
from controller.mqtt.tables import RigTelemetry
from tests.mqtt.conftest import Collector, settings_for
from tests.support.mosquitto import MosquittoBroker
from tests.support.waiting import wait_for


def _sample(i: int, **extra: object) -> bytes:
    body = {
        "id": f"s-{i}",
        "ts": datetime(2026, 11, 23, 13, 0, i % 60, tzinfo=UTC).isoformat(),
        "state": "hashing",
        "mac": "02:AA:BB:CC:DD:01",
        "hashrate_ths": 100.0 + i,
        "power_w": 3050.0,
        "boards": [{"index": 0, "temp_c": 60.5, "chip_temp_c": 71.0}, {"index": 1, "temp_c": 63.0}],
        **extra,
    }
    return json.dumps(body).encode()


def test_ingest_stores_valid_samples_and_drops_the_rest(
    mosquitto: MosquittoBroker, engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    ingest = TelemetryIngest(settings_for(mosquitto.port, "ingest-test"), engine, batch_size=50)
    # a wider subscription on the same client, to prove stray topics are dropped too
    ingest.mqtt.subscribe("farm/+/+/+/telemetry", ingest._on_message)
    ingest.start()
    ingest.mqtt.wait_ready()
    sender = Collector(mosquitto.port, "unused/#", client_id="sender")
    pub = sender.client.publish
    for i in range(20):
        pub("farm/site-a/rig-01/telemetry", _sample(i), qos=1)
    pub("farm/site-a/rig-01/telemetry", _sample(5), qos=1)  # a repeat of s-5
    pub("farm/site-a/rig-01/telemetry", b"{'state': hashing", qos=1)
    pub("farm/site-a/rig-01/telemetry", b"\xff\xfe\x00", qos=1)
    pub("farm/site-a/rig-01/telemetry", _sample(99, state="on fire"), qos=1)
    pub("farm/site-a/rig-01/telemetry", _sample(98, pad="x" * 70_000), qos=1)
    pub("farm/site-a/rig-01/extra/telemetry", _sample(97), qos=1).wait_for_publish(5)
    pub("farm/site-a/rig-02/telemetry", _sample(100), qos=1).wait_for_publish(5)
    try:
        wait_for(lambda: ingest.stats.received == 27, what="27 messages")
        wait_for(lambda: ingest.stats.inserted == 21, what="21 rows")
        assert ingest.stats.duplicates == 1
        assert ingest.stats.malformed == 3
        assert ingest.stats.oversized == 1
        assert ingest.stats.unknown_topic == 1
        assert ingest.mqtt.connected
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(RigTelemetry).where(RigTelemetry.msg_id == "site-a/rig-01/s-7")
            ).one()
            rig02 = conn.execute(
                sa.select(sa.func.count()).where(RigTelemetry.rig == "rig-02")
            ).scalar_one()
        assert (
            row.hashrate_ths == 107.0 and row.power_w == 3050.0 and row.power_source == "reported"
        )
        assert row.temp_c == 63.0 and row.chip_temp_c == 71.0 and row.mac == "02:aa:bb:cc:dd:01"
        assert row.state == "hashing" and row.site == "site-a"
        assert rig02 == 1
        text = caplog.text
        assert "invalid telemetry at state" in text
        assert "exceeds the 65536-byte limit" in text
        assert "telemetry on unknown topic=farm/site-a/rig-01/extra/telemetry dropped" in text
        assert ingest.stats.batches >= 1 and ingest.stats.max_batch <= 50
        assert ingest.stats.percentile(50) is not None
    finally:
        sender.close()
        ingest.stop()
