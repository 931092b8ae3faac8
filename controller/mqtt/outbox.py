"""The outbox: messages that must reach the broker, kept in the database until it acknowledged them.

Producers write a row in the same transaction as the fact it reports (a sale, a command's
outcome), so a crash can never leave a fact without its message. A dispatcher thread publishes
pending rows with QoS 1 while the broker is connected, at most `window` in flight, and sets
`acked_at` only when the broker's PUBACK for that row arrives. While the broker is away nothing
is published, so memory stays bounded by the window: the table is the buffer. After a crash
every unacknowledged row is sent again; receivers drop the repeat by `msg_id`.

Several gateways on one database share the table (issue 8): a dispatcher claims the rows it
is about to publish (`sent_at`, in one conditional UPDATE), so each row goes out through one
gateway; a row claimed but not acknowledged within `claim_s` (its gateway died or lost the
broker) is claimed again by whichever dispatcher is connected. A gateway cut from the broker
while its database stays reachable thus gets its messages out through the others.

A broker acknowledges a message before it is on disk: killed in that instant, it loses a
message we already marked done. For what must arrive (sale reports) a row can ask for an
end-to-end receipt (`confirm=True`): the receiving `ReliableConsumer` publishes the msg_id on
the receipt topic after its commit, and a row acknowledged by the broker but not confirmed
within `confirm_timeout_s` is sent again (the receiver drops the repeat and confirms again).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import Connection, Engine, Table, and_, func, insert, or_, select, update

from controller.mqtt.client import MqttClient
from controller.mqtt.tables import MqttOutbox

logger = logging.getLogger(__name__)

_T = cast(Table, MqttOutbox.__table__)


def encode_payload(payload: bytes | str | dict[str, Any] | list[Any]) -> bytes:
    """JSON-encode dicts and lists (compact, stable key order); bytes pass through."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


def enqueue(
    conn: Connection,
    topic: str,
    payload: bytes | str | dict[str, Any] | list[Any],
    msg_id: str,
    *,
    qos: int = 1,
    retain: bool = False,
    confirm: bool = False,
) -> bool:
    """Add a message to the outbox inside the caller's transaction.

    `msg_id` is the message's identity: enqueuing the same id twice keeps the first (False).
    `confirm=True` keeps re-sending until the receiver's receipt arrives (see module doc).
    """
    if qos not in (0, 1, 2):
        raise ValueError(f"outbox message {msg_id}: qos must be 0, 1 or 2, got {qos}")
    existing = conn.execute(select(_T.c.id).where(_T.c.msg_id == msg_id)).first()
    if existing is not None:
        return False
    conn.execute(
        insert(_T).values(
            msg_id=msg_id,
            topic=topic,
            payload=encode_payload(payload),
            qos=qos,
            retain=retain,
            confirm=confirm,
            created_at=datetime.now(UTC),
            attempts=0,
        )
    )
    return True


@dataclass(slots=True)
class OutboxStats:
    """Counters of one dispatcher since start."""

    published: int = 0
    acked: int = 0
    refused: int = 0
    confirmed: int = 0
    resent_unconfirmed: int = 0


class OutboxDispatcher:
    """Publishes pending outbox rows and marks them done on PUBACK."""

    def __init__(
        self,
        engine: Engine,
        client: MqttClient,
        *,
        window: int = 100,
        poll_interval_s: float = 0.5,
        receipt_topic: str | None = None,
        confirm_timeout_s: float = 30.0,
        claim_s: float = 10.0,
    ) -> None:
        if window < 1:
            raise ValueError(f"outbox window must be >= 1, got {window}")
        self.engine = engine
        self.client = client
        self.window = window
        self.poll_interval_s = poll_interval_s
        self.stats = OutboxStats()
        # mid -> outbox row id; touched only by the dispatcher thread
        self._inflight: dict[int, int] = {}
        # PUBACKs arrive in paho's thread under its lock: hand them over without locking
        self._acks: deque[tuple[int, ReasonCode]] = deque()
        self._receipts: deque[str] = deque()
        self.receipt_topic = receipt_topic
        self.confirm_timeout_s = confirm_timeout_s
        self.claim_s = claim_s
        self._last_resend_check = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        client.add_publish_listener(self._on_puback)
        client.add_connect_listener(self._on_connect)
        if receipt_topic is not None:
            client.subscribe(receipt_topic, self._on_receipt, qos=1)

    # ---- public --------------------------------------------------------------------------
    def start(self) -> None:
        """Run the dispatcher in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (pending rows stay in the table for next time)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Tell the dispatcher new rows are waiting (call after committing an enqueue)."""
        self._wake.set()

    def pending(self) -> int:
        """Rows still waiting for the broker's acknowledgement or, if asked, the receipt."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(_T)
                    .where(
                        or_(
                            _T.c.acked_at.is_(None),
                            and_(_T.c.confirm.is_(True), _T.c.confirmed_at.is_(None)),
                        )
                    )
                ).scalar_one()
            )

    @property
    def inflight(self) -> int:
        """Rows published and not yet acknowledged (never more than `window`)."""
        return len(self._inflight)

    # ---- internals -----------------------------------------------------------------------
    def _on_puback(self, mid: int, reason_code: ReasonCode) -> None:
        self._acks.append((mid, reason_code))
        self._wake.set()

    def _on_connect(self, session_present: bool) -> None:
        self._wake.set()

    def _on_receipt(self, msg: Any) -> None:
        try:
            receipt = json.loads(msg.payload)
            msg_id = receipt["msg_id"]
        except (ValueError, KeyError, TypeError):
            logger.warning("outbox receipt on topic=%s malformed; dropped", msg.topic)
            return
        self._receipts.append(str(msg_id))
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()
            try:
                self._settle_acks()
                self._settle_receipts()
                if self.client.connected:
                    self._publish_pending()
            except Exception:
                # a database hiccup must not kill delivery: log, back off, retry
                logger.exception("outbox dispatch failed; retrying")
                self._stop.wait(1.0)
        try:
            self._settle_acks()
        except Exception:
            logger.exception("outbox: final ack settlement failed")

    def _settle_acks(self) -> None:
        done: list[int] = []
        refused: list[tuple[int, str]] = []
        while self._acks:
            mid, reason = self._acks.popleft()
            row_id = self._inflight.pop(mid, None)
            if row_id is None:
                continue
            if reason.is_failure:
                refused.append((row_id, str(reason)))
            else:
                done.append(row_id)
        if not done and not refused:
            return
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if done:
                conn.execute(update(_T).where(_T.c.id.in_(done)).values(acked_at=now))
            for row_id, reason_text in refused:
                conn.execute(
                    update(_T)
                    .where(_T.c.id == row_id)
                    .values(last_error=f"broker refused: {reason_text}")
                )
        self.stats.acked += len(done)
        self.stats.refused += len(refused)
        for row_id, reason_text in refused:
            # refused rows stay pending and are retried; they are logged so an ACL mistake shows
            logger.error("outbox message refused by broker row=%d reason=%s", row_id, reason_text)

    def _settle_receipts(self) -> None:
        confirmed: list[str] = []
        while self._receipts:
            confirmed.append(self._receipts.popleft())
        now = datetime.now(UTC)
        if confirmed:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(_T)
                    .where(_T.c.msg_id.in_(confirmed), _T.c.confirmed_at.is_(None))
                    .values(confirmed_at=now)
                )
            self.stats.confirmed += int(result.rowcount or 0)
        if self.receipt_topic is None:
            return
        mono = time.monotonic()
        if mono - self._last_resend_check < min(1.0, self.confirm_timeout_s / 2):
            return
        self._last_resend_check = mono
        # acknowledged by the broker, never confirmed: the broker may have lost it; send again
        cutoff = now - timedelta(seconds=self.confirm_timeout_s)
        with self.engine.begin() as conn:
            result = conn.execute(
                update(_T)
                .where(
                    _T.c.confirm.is_(True),
                    _T.c.confirmed_at.is_(None),
                    _T.c.acked_at.is_not(None),
                    _T.c.acked_at < cutoff,
                )
                .values(acked_at=None, sent_at=None, last_error="no receipt: sent again")
            )
        resent = int(result.rowcount or 0)
        if resent:
            self.stats.resent_unconfirmed += resent
            logger.warning(
                "outbox: %d messages acknowledged but never confirmed; sending again", resent
            )
            self._wake.set()

    def _publish_pending(self) -> None:
        room = self.window - len(self._inflight)
        if room <= 0:
            return
        busy = set(self._inflight.values())
        now = datetime.now(UTC)
        # Free: never sent, or sent by a dispatcher that has not seen it acknowledged in time.
        free = and_(
            _T.c.acked_at.is_(None),
            or_(_T.c.sent_at.is_(None), _T.c.sent_at < now - timedelta(seconds=self.claim_s)),
        )
        with self.engine.connect() as conn:
            ids = conn.scalars(
                select(_T.c.id).where(free).order_by(_T.c.id).limit(room + len(busy))
            ).all()
        ids = [i for i in ids if i not in busy][:room]
        if not ids:
            return
        # The claim: another gateway's dispatcher may have taken some of them since the SELECT.
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(_T)
                .where(_T.c.id.in_(ids), free)
                .values(sent_at=now, attempts=_T.c.attempts + 1)
                .returning(_T.c.id, _T.c.msg_id, _T.c.topic, _T.c.payload, _T.c.qos, _T.c.retain)
            ).all()
        sent = 0
        for row in sorted(rows, key=lambda r: r.id):
            if not self.client.connected:
                break  # the rest stays claimed until claim_s: then any dispatcher sends it
            info = self.client.publish(
                row.topic, row.payload, qos=row.qos, retain=bool(row.retain), msg_id=row.msg_id
            )
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                logger.warning("outbox publish failed row=%d rc=%s", row.id, info.rc)
                break
            if row.qos == 0:
                # QoS 0 has no PUBACK: handed to the socket is as good as it gets
                self._acks.append((info.mid, ReasonCode(PacketTypes.PUBACK, identifier=0)))
            self._inflight[info.mid] = row.id
            sent += 1
        self.stats.published += sent
        if sent == room:
            self._wake.set()
