"""Helpers for the MQTT tests: a SQLite store, a message collector on a real broker."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

import controller.mqtt.tables  # noqa: F401  (registers the MQTT tables on the controller metadata)
from controller.mqtt.client import MqttSettings
from controller.tables import Base

pytestmark = pytest.mark.mqtt


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A SQLite file store (WAL) with the controller's tables."""
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'store.db'}", connect_args={"timeout": 30})
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


def settings_for(port: int, client_id: str, **kw: Any) -> MqttSettings:
    """Client settings for a test broker on 127.0.0.1 with fast reconnects."""
    return MqttSettings(port=port, client_id=client_id, reconnect_min_s=1, reconnect_max_s=2, **kw)


class Collector:
    """A subscriber that records (topic, payload) of every message it gets."""

    def __init__(self, port: int, *topics: str, client_id: str = "collector", **auth: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
        )
        if auth:
            self.client.username_pw_set(auth["username"], auth.get("password"))
        self._topics = topics
        self._ready = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(5), "collector did not subscribe"

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def json(self, topic_filter: str) -> list[dict[str, Any]]:
        """Decoded payloads of messages matching `topic_filter`."""
        with self.lock:
            return [
                json.loads(p) for t, p in self.messages if paho.topic_matches_sub(topic_filter, t)
            ]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
