"""Rig telemetry from MQTT into the store, in batches, without losing or doubling a sample.

The subscriber uses manual acknowledgement: a message's PUBACK goes to the broker only after
the batch holding it is committed, so a crash between receipt and commit leaves the message
with the broker (persistent session), which delivers it again. The redelivery is dropped by its
message id (unique column, INSERT ... ON CONFLICT DO NOTHING). The hand-over queue between
paho's thread and the writer is bounded: when the database falls behind, paho stops reading,
the broker holds the rest, and memory stays flat.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import paho.mqtt.client as paho
from sqlalchemy import Engine, Table

from controller.mqtt.client import MqttClient, MqttSettings
from controller.mqtt.dedup import insert_ignoring_duplicates
from controller.mqtt.tables import RigTelemetry
from miners.mqtt_driver import DEFAULT_PREFIX, MqttPayloadError, RigTopics, parse_telemetry

logger = logging.getLogger(__name__)

_TABLE = cast(Table, RigTelemetry.__table__)
Row = dict[str, Any]


@dataclass(slots=True)
class IngestStats:
    """Counters since start; `latencies_s` holds the latest sample-to-commit latencies."""

    received: int = 0
    inserted: int = 0
    duplicates: int = 0
    malformed: int = 0
    oversized: int = 0
    unknown_topic: int = 0
    batches: int = 0
    db_errors: int = 0
    max_batch: int = 0
    latencies_s: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))

    def percentile(self, q: float) -> float | None:
        """Latency percentile `q` in [0, 100] over the kept samples, in seconds."""
        data = sorted(self.latencies_s)
        if not data:
            return None
        index = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
        return data[index]


def telemetry_row(site: str, rig: str, payload: bytes, topic: str, received: datetime) -> Row:
    """The `rig_telemetry` row of one payload; raises `MqttPayloadError` when it is not valid."""
    t = parse_telemetry(topic, payload)
    temps = [b.temp_c for b in t.boards if b.temp_c is not None]
    chips = [b.chip_temp_c for b in t.boards if b.chip_temp_c is not None]
    return {
        "msg_id": f"{site}/{rig}/{t.id}",
        "time": t.ts,
        "received_at": received,
        "site": site,
        "rig": rig,
        "mac": t.mac.lower() if t.mac else None,
        "state": t.state,
        "hashrate_ths": t.hashrate_ths,
        "power_w": t.power_w,
        "power_source": "reported" if t.power_w is not None else None,
        "temp_c": max(temps) if temps else None,
        "chip_temp_c": max(chips) if chips else None,
    }


class TelemetryIngest:
    """Subscribes to `<prefix>/<site>/+/telemetry` and batch-inserts into `rig_telemetry`."""

    def __init__(
        self,
        settings: MqttSettings,
        engine: Engine,
        *,
        prefix: str = DEFAULT_PREFIX,
        site: str = "+",
        batch_size: int = 1000,
        max_wait_s: float = 0.05,
        queue_max: int = 20_000,
        on_rows: Callable[[Sequence[Row]], None] | None = None,
        shared_group: str | None = None,
    ) -> None:
        """`shared_group` subscribes as `$share/<group>/...` so several ingests split the load."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.engine = engine
        self.topics = RigTopics(prefix)
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.on_rows = on_rows
        self.stats = IngestStats()
        self._queue: queue.Queue[tuple[Row, int, int]] = queue.Queue(maxsize=queue_max)
        self._stop = threading.Event()
        self._generation = 0
        # held while acking a batch and while a new connection is counted: a batch's acks go
        # out entirely on the connection its messages came from, or not at all
        self._ack_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.mqtt = MqttClient(settings, manual_ack=True)
        self.mqtt.add_connect_listener(self._on_connect)
        topic_filter = self.topics.filter("telemetry", site)
        if shared_group is not None:
            # MQTT 5 shared subscription: the broker spreads messages over every ingest of the
            # group (several processes when one cannot keep up)
            topic_filter = f"$share/{shared_group}/{topic_filter}"
        self.mqtt.subscribe(topic_filter, self._on_message, qos=1)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread and the MQTT connection."""
        self._thread = threading.Thread(target=self._writer, name="mqtt-ingest", daemon=True)
        self._thread.start()
        self.mqtt.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect, write what was received, stop the writer."""
        self.mqtt.stop()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def backlog(self) -> int:
        """Messages received and not yet written."""
        return self._queue.qsize()

    # ---- paho thread -----------------------------------------------------------------------
    def _on_connect(self, session_present: bool) -> None:
        # acks of the previous connection's messages must not be sent on this one: the broker
        # may have numbered other messages with those ids; they will be redelivered and deduped
        with self._ack_lock:
            self._generation += 1

    def _ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self.mqtt.client.ack(mid, qos)

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        self.stats.received += 1
        parsed = self.topics.parse(msg.topic)
        if parsed is None or parsed[2] != "telemetry":
            self.stats.unknown_topic += 1
            logger.warning("telemetry on unknown topic=%s dropped", msg.topic)
            self._ack(msg.mid, msg.qos)
            return
        site, rig, _ = parsed
        try:
            row = telemetry_row(site, rig, bytes(msg.payload), msg.topic, datetime.now(UTC))
        except MqttPayloadError as exc:
            if "exceeds" in str(exc):
                self.stats.oversized += 1
            else:
                self.stats.malformed += 1
            logger.warning("telemetry dropped: %s", exc)
            self._ack(msg.mid, msg.qos)
            return
        item = (row, msg.mid if msg.qos > 0 else -1, self._generation)
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue  # backpressure: the broker keeps what we do not read

    # ---- writer thread ---------------------------------------------------------------------
    def _next_batch(self) -> list[tuple[Row, int, int]]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _write(self, rows: list[Row]) -> int:
        while True:
            try:
                with self.engine.begin() as conn:
                    return insert_ignoring_duplicates(conn, _TABLE, rows)
            except Exception as exc:
                # unacked messages stay with the broker; retrying is safe thanks to the unique id
                self.stats.db_errors += 1
                logger.error("telemetry batch of %d rows not written, retrying: %s", len(rows), exc)
                if self._stop.wait(1.0):
                    raise

    def _writer(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                if self._stop.is_set():
                    return
                continue
            rows = [item[0] for item in batch]
            try:
                inserted = self._write(rows)
            except Exception:
                logger.error(
                    "telemetry writer stopping with %d rows unwritten (not acked)", len(rows)
                )
                return
            committed = time.time()
            with self._ack_lock:
                generation = self._generation
                for _row, mid, gen in batch:
                    if mid >= 0 and gen == generation:
                        self._ack(mid, 1)
            self.stats.batches += 1
            self.stats.max_batch = max(self.stats.max_batch, len(rows))
            self.stats.inserted += inserted
            self.stats.duplicates += len(rows) - inserted
            for row in rows:
                self.stats.latencies_s.append(committed - row["time"].timestamp())
            if inserted < len(rows):
                logger.info("telemetry duplicates dropped count=%d", len(rows) - inserted)
            if self.on_rows is not None:
                try:
                    self.on_rows(rows)
                except Exception:
                    logger.exception("telemetry on_rows callback failed")
