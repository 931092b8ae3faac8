"""Several gateways' dispatchers on one outbox table (issue 8): each row goes out once, and a
row claimed by a dispatcher that went away is sent by another after `claim_s`."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import paho.mqtt.client as paho
import sqlalchemy as sa

from controller.mqtt.client import MqttClient
from controller.mqtt.outbox import OutboxDispatcher, enqueue
from tests.mqtt.conftest import Collector, settings_for
from tests.support.mosquitto import MosquittoBroker
from tests.support.waiting import wait_for


class IdCollector(Collector):
    """A collector that keeps the outbox's `msg_id` user property of each message."""

    def __init__(self, port: int, topic: str) -> None:
        self.ids: list[str] = []
        super().__init__(port, topic, client_id="shared-outbox-collector")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        for key, value in getattr(msg.properties, "UserProperty", None) or []:
            if key == "msg_id":
                with self.lock:
                    self.ids.append(value)


def _dispatcher(engine: sa.Engine, port: int, name: str, **kw: float) -> OutboxDispatcher:
    client = MqttClient(settings_for(port, name))
    outbox = OutboxDispatcher(engine, client, poll_interval_s=0.01, **kw)  # type: ignore[arg-type]
    client.start()
    client.wait_ready()
    outbox.start()
    return outbox


def _stop(*outboxes: OutboxDispatcher) -> None:
    for outbox in outboxes:
        outbox.stop()
        outbox.client.stop()


def test_three_dispatchers_send_each_row_once(
    mosquitto: MosquittoBroker, engine: sa.Engine
) -> None:
    collector = IdCollector(mosquitto.port, "farmctl/sales/#")
    outboxes = [_dispatcher(engine, mosquitto.port, f"gw{i}") for i in range(3)]
    try:
        for i in range(300):
            with engine.begin() as conn:
                enqueue(conn, f"farmctl/sales/r{i}", {"n": i}, f"sale-r{i:03d}", confirm=False)
            outboxes[i % 3].wake()
        wait_for(lambda: outboxes[0].pending() == 0, timeout=30, what="outbox drained")
        wait_for(lambda: len(collector.ids) >= 300, timeout=10, what="300 messages")
        time.sleep(0.5)  # a duplicate would arrive now
        assert sorted(collector.ids) == [f"sale-r{i:03d}" for i in range(300)]
        assert sum(o.stats.published for o in outboxes) == 300
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT max(attempts) FROM mqtt_outbox")).scalar() == 1
    finally:
        _stop(*outboxes)
        collector.close()


def test_rows_claimed_by_a_dead_dispatcher_are_sent_after_claim_s(
    mosquitto: MosquittoBroker, engine: sa.Engine
) -> None:
    collector = IdCollector(mosquitto.port, "farmctl/sales/#")
    with engine.begin() as conn:
        for i in range(5):
            enqueue(conn, f"farmctl/sales/d{i}", {"n": i}, f"sale-d{i}")
        # A gateway claimed them (sent_at) and died before the broker's PUBACK.
        conn.execute(
            sa.text("UPDATE mqtt_outbox SET sent_at = :t, attempts = 1"), {"t": datetime.now(UTC)}
        )
    started = time.monotonic()
    survivor = _dispatcher(engine, mosquitto.port, "survivor", claim_s=2.0)
    try:
        time.sleep(1.0)
        assert collector.ids == [] and survivor.pending() == 5  # still someone else's
        wait_for(lambda: survivor.pending() == 0, timeout=10, what="claimed rows taken over")
        assert time.monotonic() - started >= 1.9
        wait_for(lambda: len(collector.ids) == 5, what="5 messages")
        assert sorted(collector.ids) == [f"sale-d{i}" for i in range(5)]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT min(attempts) FROM mqtt_outbox")).scalar() == 2
    finally:
        _stop(survivor)
        collector.close()
