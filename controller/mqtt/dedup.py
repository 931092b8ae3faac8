"""Dropping duplicates by message id.

QoS 1 means at least once: after a broker restart, a reconnect or a crash before our PUBACK,
the same message can arrive again. Every message that matters carries an id (MQTT 5 user
property `msg_id` or the payload's `id`); a consumer records the ids it processed in the same
transaction as the processing, so "processed" and "seen" can never disagree, and a redelivery
is dropped. A bounded LRU in memory answers the common case without a query.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Table, delete, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from controller.mqtt.tables import MqttSeenMessage

logger = logging.getLogger(__name__)

T = TypeVar("T")


def insert_ignoring_duplicates(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str] | None = None,
) -> int:
    """Insert rows, skipping any whose `keys` (a unique constraint) are already stored.

    `keys` defaults to the table's primary key (for `rig_telemetry`: msg_id and time, since a
    partitioned table's unique keys must hold the partition column). One INSERT ... ON CONFLICT
    DO NOTHING per batch on SQLite and PostgreSQL; returns how many rows were actually inserted.
    """
    if not rows:
        return 0
    key_names = list(keys) if keys else [c.name for c in table.primary_key.columns]
    dialect = conn.dialect.name
    if dialect == "sqlite":
        stmt: Any = sqlite.insert(table).on_conflict_do_nothing(index_elements=key_names)
    elif dialect == "postgresql":
        # psycopg reports no rowcount for executemany: count the RETURNING rows instead
        stmt = (
            postgresql.insert(table)
            .on_conflict_do_nothing(index_elements=key_names)
            .returning(table.c[key_names[0]])
        )
        return len(conn.execute(stmt, [dict(r) for r in rows]).all())
    else:
        # Portable fallback: filter known keys first (one writer per table, so no race).
        key_cols = [table.c[k] for k in key_names]
        wanted = [tuple(r[k] for k in key_names) for r in rows]
        existing = set(
            tuple(found)
            for found in conn.execute(select(*key_cols).where(tuple_(*key_cols).in_(wanted)))
        )
        fresh = []
        for row, key in zip(rows, wanted, strict=True):
            if key not in existing:
                existing.add(key)
                fresh.append(row)
        if fresh:
            conn.execute(insert(table), fresh)
        return len(fresh)
    result = conn.execute(stmt, [dict(r) for r in rows])
    return int(result.rowcount or 0)


class SeenMessages:
    """Persistent set of processed message ids for one consumer, with a bounded LRU in front."""

    def __init__(self, engine: Engine, consumer: str, lru_size: int = 10_000) -> None:
        if lru_size < 1:
            raise ValueError(f"lru_size must be >= 1, got {lru_size}")
        self.engine = engine
        self.consumer = consumer
        self.lru_size = lru_size
        self._lru: OrderedDict[str, None] = OrderedDict()
        self.duplicates = 0
        self._table = cast(Table, MqttSeenMessage.__table__)

    def _remember(self, msg_id: str) -> None:
        self._lru[msg_id] = None
        self._lru.move_to_end(msg_id)
        while len(self._lru) > self.lru_size:
            self._lru.popitem(last=False)

    def seen(self, msg_id: str) -> bool:
        """True when `msg_id` was already processed (LRU first, then the table)."""
        if msg_id in self._lru:
            return True
        with self.engine.connect() as conn:
            row = conn.execute(
                select(self._table.c.msg_id).where(
                    self._table.c.consumer == self.consumer, self._table.c.msg_id == msg_id
                )
            ).first()
        if row is not None:
            self._remember(msg_id)
            return True
        return False

    def claim(self, conn: Connection, msg_id: str) -> bool:
        """Record `msg_id` in the caller's transaction; False when it was already recorded."""
        inserted = insert_ignoring_duplicates(
            conn,
            self._table,
            [{"consumer": self.consumer, "msg_id": msg_id, "seen_at": datetime.now(UTC)}],
            keys=("consumer", "msg_id"),
        )
        return inserted == 1

    def process_once(self, msg_id: str, work: Callable[[Connection], T]) -> tuple[bool, T | None]:
        """Run `work(conn)` and record `msg_id` in one transaction, unless already processed.

        Returns (True, result) when processed now, (False, None) for a duplicate.
        """
        if msg_id in self._lru:
            self.duplicates += 1
            logger.info("duplicate dropped consumer=%s msg_id=%s", self.consumer, msg_id)
            return False, None
        with self.engine.begin() as conn:
            if not self.claim(conn, msg_id):
                fresh = False
                result = None
            else:
                fresh = True
                result = work(conn)
        self._remember(msg_id)
        if not fresh:
            self.duplicates += 1
            logger.info("duplicate dropped consumer=%s msg_id=%s", self.consumer, msg_id)
        return fresh, result

    def prune(self, older_than: datetime) -> int:
        """Forget ids seen before `older_than` (after that, a redelivery would count as new)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(self._table).where(
                    self._table.c.consumer == self.consumer, self._table.c.seen_at < older_than
                )
            )
        return int(result.rowcount or 0)

    def known(self) -> Iterable[str]:
        """Every id recorded for this consumer (for inspection and tests)."""
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(self._table.c.msg_id).where(self._table.c.consumer == self.consumer)
                ).scalars()
            )
