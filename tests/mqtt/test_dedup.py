"""Duplicates dropped by message id, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import controller.mqtt.tables  # noqa: F401
from controller.mqtt.dedup import SeenMessages, insert_ignoring_duplicates
from controller.mqtt.outbox import enqueue
from controller.mqtt.tables import MqttOutbox, RigTelemetry
from controller.tables import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[sa.Engine]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dedup.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _row(i: int) -> dict[str, object]:
    now = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    return {
        "msg_id": f"site-a/rig-01/s-{i}",
        "time": now + timedelta(seconds=i),
        "received_at": now,
        "site": "site-a",
        "rig": "rig-01",
        "state": "hashing",
        "hashrate_ths": 100.0 + i,
    }


def test_batch_insert_skips_known_ids(store: sa.Engine) -> None:
    table = RigTelemetry.__table__
    with store.begin() as conn:
        assert insert_ignoring_duplicates(conn, table, [_row(i) for i in range(3)]) == 3  # type: ignore[arg-type]
    with store.begin() as conn:
        # a redelivered batch overlapping the first, with a repeat inside itself
        assert insert_ignoring_duplicates(conn, table, [_row(i) for i in (1, 2, 3, 4, 4)]) == 2  # type: ignore[arg-type]
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(RigTelemetry.msg_id, RigTelemetry.hashrate_ths).order_by(RigTelemetry.time)
        ).all()
    assert [r.hashrate_ths for r in rows] == [100.0, 101.0, 102.0, 103.0, 104.0]


def test_process_once_survives_a_restart(store: sa.Engine) -> None:
    booked: list[str] = []
    seen = SeenMessages(store, "accounting", lru_size=2)
    assert seen.process_once("sale-S1", lambda conn: booked.append("S1")) == (True, None)
    assert seen.process_once("sale-S1", lambda conn: booked.append("again")) == (False, None)
    # a fresh process (empty LRU) still knows S1 from the table
    again = SeenMessages(store, "accounting")
    assert again.seen("sale-S1") and not again.seen("sale-S2")
    assert again.process_once("sale-S1", lambda conn: booked.append("again")) == (False, None)
    # another consumer processes the same id independently
    assert SeenMessages(store, "audit").process_once("sale-S1", lambda conn: 7) == (True, 7)
    assert booked == ["S1"]
    assert again.duplicates == 1

    def fail(conn: sa.Connection) -> None:
        raise RuntimeError("ledger down")

    with pytest.raises(RuntimeError, match="ledger down"):
        seen.process_once("sale-S2", fail)
    # the failed processing did not record the id: the redelivery is processed
    assert seen.process_once("sale-S2", lambda conn: booked.append("S2"))[0] is True
    assert booked == ["S1", "S2"]
    assert seen.prune(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert sorted(SeenMessages(store, "audit").known()) == ["sale-S1"]


def test_outbox_enqueue_is_idempotent(store: sa.Engine) -> None:
    with store.begin() as conn:
        assert enqueue(
            conn, "farmctl/sales/S1", {"id": "S1", "btc": "0.5"}, "sale-S1", confirm=True
        )
        assert not enqueue(conn, "farmctl/sales/S1", {"id": "S1", "btc": "9.9"}, "sale-S1")
    with store.connect() as conn:
        row = conn.execute(sa.select(MqttOutbox)).one()
    assert row.payload == b'{"btc":"0.5","id":"S1"}' and row.confirm and row.acked_at is None
    with store.begin() as conn, pytest.raises(ValueError, match="qos must be 0, 1 or 2"):
        enqueue(conn, "t", b"x", "m-2", qos=3)
