"""A reliable consumer: process each message exactly once, acknowledge only after the commit.

For messages that must not be lost or doubled (sale reports at a receiving system, command
acks at a client): the handler runs in a database transaction together with the record of
the message id; the PUBACK goes to the broker only after that commit. With `receipt_topic`
set, it then publishes `{"msg_id": ...}` there so the sender's outbox knows it arrived. A crash before the
commit leaves the message with the broker (persistent session) and it comes again; a
redelivery after the commit is dropped by its id.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from sqlalchemy import Connection, Engine

from controller.mqtt.client import MqttClient, MqttSettings, message_id
from controller.mqtt.dedup import SeenMessages

logger = logging.getLogger(__name__)

Work = Callable[[Connection, str, dict[str, Any]], None]
MAX_PAYLOAD_BYTES = 256 * 1024


class ReliableConsumer:
    """Subscribes with QoS 1 and a persistent session; `work(conn, topic, payload)` once per id."""

    def __init__(
        self,
        settings: MqttSettings,
        engine: Engine,
        topic_filter: str,
        work: Work,
        *,
        consumer: str | None = None,
        queue_max: int = 10_000,
        on_session_lost: Callable[[], None] | None = None,
        receipt_topic: str | None = None,
    ) -> None:
        self.engine = engine
        self.work = work
        self.receipt_topic = receipt_topic
        self.seen = SeenMessages(engine, consumer or settings.client_id)
        self.processed = 0
        self.dropped = 0
        self._queue: queue.Queue[tuple[paho.MQTTMessage, int]] = queue.Queue(maxsize=queue_max)
        self._stop = threading.Event()
        self._generation = 0
        self._ack_lock = threading.Lock()  # see TelemetryIngest: acks never cross connections
        self._thread: threading.Thread | None = None
        self.mqtt = MqttClient(settings, manual_ack=True, on_session_lost=on_session_lost)
        self.mqtt.add_connect_listener(self._on_connect)
        self.mqtt.subscribe(topic_filter, self._on_message, qos=1)

    def start(self) -> None:
        """Start the worker thread and connect."""
        self._thread = threading.Thread(target=self._worker, name="mqtt-consumer", daemon=True)
        self._thread.start()
        self.mqtt.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect and stop the worker (unprocessed messages stay with the broker)."""
        self.mqtt.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _on_connect(self, session_present: bool) -> None:
        with self._ack_lock:
            self._generation += 1

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put((msg, self._generation), timeout=0.5)
                return
            except queue.Full:
                continue

    def _ack(self, msg: paho.MQTTMessage, generation: int) -> None:
        # an ack for the previous connection's message would hit another message on this one
        with self._ack_lock:
            if msg.qos > 0 and generation == self._generation:
                self.mqtt.client.ack(msg.mid, msg.qos)

    def _handle(self, msg: paho.MQTTMessage, generation: int) -> None:
        payload: dict[str, Any] | None = None
        try:
            if len(msg.payload) > MAX_PAYLOAD_BYTES:
                raise ValueError(f"payload of {len(msg.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
            decoded = json.loads(msg.payload)
            if not isinstance(decoded, dict):
                raise ValueError(f"payload is {type(decoded).__name__}, expected an object")
            payload = decoded
            msg_id = message_id(msg, payload)
            if msg_id is None:
                raise ValueError("no msg_id user property and no id field")
        except ValueError as exc:
            self.dropped += 1
            logger.warning("message dropped topic=%s: %s", msg.topic, exc)
            self._ack(msg, generation)
            return
        while not self._stop.is_set():
            try:
                fresh, _ = self.seen.process_once(
                    msg_id, lambda conn: self.work(conn, msg.topic, payload or {})
                )
                break
            except Exception as exc:
                logger.error(
                    "message topic=%s id=%s not processed, retrying: %s", msg.topic, msg_id, exc
                )
                self._stop.wait(1.0)
        else:
            return  # stopping: not acked, the broker keeps it
        if fresh:
            self.processed += 1
        if self.receipt_topic is not None:
            # a duplicate is confirmed again: the sender re-sent because a receipt went missing
            self.mqtt.publish(self.receipt_topic, json.dumps({"msg_id": msg_id}), qos=1)
        self._ack(msg, generation)

    def _worker(self) -> None:
        while not self._stop.is_set():
            try:
                msg, generation = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self._handle(msg, generation)
