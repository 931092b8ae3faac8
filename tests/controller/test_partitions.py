"""rig_telemetry by day on PostgreSQL: migration, routing, default partition, retention, dedup."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from controller import migrate, partitions
from controller.mqtt.dedup import insert_ignoring_duplicates
from controller.mqtt.tables import RigTelemetry
from controller.storage import make_engine

TABLE = cast(sa.Table, RigTelemetry.__table__)
INITIAL = "117533d6c2f9"  # the revision before partitioning


def _row(msg_id: str, when: datetime, rig: str = "rig-01") -> dict[str, Any]:
    return {
        "msg_id": msg_id,
        "time": when,
        "received_at": when,
        "site": "west",
        "rig": rig,
        "state": "hashing",
        "hashrate_ths": 100.0,
        "power_w": 3250.0,
    }


def _where(engine: sa.Engine) -> dict[str, str]:
    """msg_id -> the partition its row is stored in."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT msg_id, tableoid::regclass::text FROM rig_telemetry"))
        return {msg_id: str(part).rsplit(".", 1)[-1] for msg_id, part in rows}


@pytest.fixture
def pg(postgres_url: str) -> Any:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    yield engine
    engine.dispose()


def test_migration_creates_day_partitions_and_a_default(pg: sa.Engine) -> None:
    today = datetime.now(UTC).date()
    with pg.connect() as conn:
        assert partitions.is_partitioned(conn, "rig_telemetry")
        days = partitions.day_partitions(conn, "rig_telemetry")
        strategy = conn.execute(
            sa.text(
                "SELECT partstrat, a.attname FROM pg_partitioned_table p"
                " JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
                " WHERE partrelid = 'rig_telemetry'::regclass"
            )
        ).one()
        default = conn.execute(sa.text("SELECT to_regclass('rig_telemetry_default')")).scalar()
    assert tuple(strategy) == ("r", "time")  # range on time
    assert default is not None
    assert sorted(days) == [today + timedelta(days=i) for i in range(8)]
    assert days[today] == f"rig_telemetry_p{today:%Y%m%d}"


def test_rows_land_in_their_day_and_strays_in_the_default(pg: sa.Engine) -> None:
    today = datetime.now(UTC).date()
    noon = partitions.day_start(today) + timedelta(hours=12)
    rows = [_row(f"d{i}", noon + timedelta(days=i)) for i in range(3)]
    # a rig with a clock years off, and one a minute before today's first partition
    rows += [_row("future", datetime(2031, 1, 1, tzinfo=UTC))]
    rows += [_row("past", partitions.day_start(today) - timedelta(minutes=1))]
    with pg.begin() as conn:
        assert insert_ignoring_duplicates(conn, TABLE, rows) == 5
    where = _where(pg)
    assert where["d0"] == f"rig_telemetry_p{today:%Y%m%d}"
    assert where["d1"] == f"rig_telemetry_p{today + timedelta(days=1):%Y%m%d}"
    assert where["d2"] == f"rig_telemetry_p{today + timedelta(days=2):%Y%m%d}"
    assert where["future"] == where["past"] == "rig_telemetry_default"
    # a day boundary belongs to the day it starts
    with pg.begin() as conn:
        insert_ignoring_duplicates(conn, TABLE, [_row("edge", partitions.day_start(today))])
    assert _where(pg)["edge"] == f"rig_telemetry_p{today:%Y%m%d}"


def test_new_partition_takes_its_rows_from_the_default(pg: sa.Engine) -> None:
    later = datetime.now(UTC).date() + timedelta(days=30)
    at = partitions.day_start(later) + timedelta(hours=3)
    with pg.begin() as conn:
        insert_ignoring_duplicates(
            conn, TABLE, [_row("early", at), _row("later", at + timedelta(days=1))]
        )
    assert set(_where(pg).values()) == {"rig_telemetry_default"}
    report = partitions.ensure_partitions(pg, "rig_telemetry", later, ahead_days=0)
    assert report.created == [f"rig_telemetry_p{later:%Y%m%d}"] and report.moved_rows == 1
    where = _where(pg)
    assert where == {"early": f"rig_telemetry_p{later:%Y%m%d}", "later": "rig_telemetry_default"}
    # the moved-into partition carries the parent's key and index, like one made ahead
    with pg.connect() as conn:
        indexes = set(
            conn.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"),
                {"t": f"rig_telemetry_p{later:%Y%m%d}"},
            ).scalars()
        )
    assert any("UNIQUE" in d and '(msg_id, "time")' in d for d in indexes), indexes
    assert any('(site, rig, "time")' in d for d in indexes), indexes
    # a second run creates nothing
    assert partitions.ensure_partitions(pg, "rig_telemetry", later, ahead_days=0).created == []


def test_retention_drops_old_days_and_keeps_recent_ones(pg: sa.Engine) -> None:
    now = datetime.now(UTC)
    today = now.date()
    first = today - timedelta(days=40)
    partitions.ensure_partitions(pg, "rig_telemetry", first, ahead_days=40)
    rows = [
        _row(f"age{age}", partitions.day_start(today - timedelta(days=age)) + timedelta(hours=6))
        for age in (40, 35, 31, 30, 29, 1, 0)
    ]
    rows.append(_row("stray-old", datetime(2020, 5, 1, tzinfo=UTC)))  # lands in the default
    with pg.begin() as conn:
        insert_ignoring_duplicates(conn, TABLE, rows)
    report = partitions.apply_retention(pg, TABLE, now, retention_days=30)
    cutoff = now - timedelta(days=30)
    # every day that ended by the cutoff is gone, whole; none after it
    expected_dropped = [
        f"rig_telemetry_p{first + timedelta(days=i):%Y%m%d}"
        for i in range(41)
        if partitions.day_start(first + timedelta(days=i + 1)) <= cutoff
    ]
    assert report.dropped == expected_dropped and len(expected_dropped) == 10
    assert report.deleted_rows == 1  # the stray row in the default partition
    assert sorted(_where(pg)) == ["age0", "age1", "age29", "age30"]
    with pg.connect() as conn:
        days = partitions.day_partitions(conn, "rig_telemetry")
    assert min(days) == today - timedelta(days=30) and max(days) == today + timedelta(days=7)
    # partitions ahead are kept up (nothing new to create: the migration made them)
    assert report.created == []


def test_duplicate_message_ids_are_dropped_across_batches(pg: sa.Engine) -> None:
    when = partitions.day_start(datetime.now(UTC).date()) + timedelta(hours=1)
    batch = [_row(f"west/rig-01/s-{i}", when + timedelta(seconds=30 * i)) for i in range(4)]
    with pg.begin() as conn:
        assert insert_ignoring_duplicates(conn, TABLE, batch[:3]) == 3
    with pg.begin() as conn:
        # a redelivery overlapping the first batch, with a repeat inside itself
        assert (
            insert_ignoring_duplicates(conn, TABLE, [batch[1], batch[2], batch[3], batch[3]]) == 1
        )
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM rig_telemetry")).scalar_one() == 4


def _old_rows(engine: sa.Engine, days: list[date]) -> None:
    with engine.begin() as conn:
        for i, day in enumerate(days):
            when = partitions.day_start(day) + timedelta(hours=2)
            conn.execute(
                sa.text(
                    "INSERT INTO rig_telemetry (msg_id, time, received_at, site, rig, state)"
                    " VALUES (:m, :t, :t, 'west', 'rig-01', 'hashing')"
                ),
                {"m": f"old-{i}", "t": when},
            )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrade_keeps_rows_is_idempotent_and_downgrades(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'farm.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    migrate.upgrade(url, INITIAL)
    engine = make_engine(url)
    try:
        today = datetime.now(UTC).date()
        _old_rows(engine, [today - timedelta(days=3), today])
        migrate.upgrade(url)
        migrate.upgrade(url)  # a second upgrade is a no-op
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert migrate.schema_drift(engine) == []
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT msg_id FROM rig_telemetry ORDER BY time")).scalars()
            assert list(got) == ["old-0", "old-1"]
        if backend == "postgresql":
            # the copied rows' days got partitions of their own, not the default
            assert _where(engine) == {
                "old-0": f"rig_telemetry_p{today - timedelta(days=3):%Y%m%d}",
                "old-1": f"rig_telemetry_p{today:%Y%m%d}",
            }
        migrate.downgrade(url, INITIAL)
        with engine.connect() as conn:
            back = conn.execute(sa.text("SELECT id, msg_id FROM rig_telemetry ORDER BY id")).all()
            assert [r.msg_id for r in back] == ["old-0", "old-1"]
            assert not partitions.is_partitioned(conn, "rig_telemetry")
            names = set(sa.inspect(conn).get_table_names())
        assert not any(partitions.is_partition_name(n) for n in names)
        migrate.upgrade(url)
        assert migrate.schema_drift(engine) == []
    finally:
        engine.dispose()


def test_sqlite_retention_deletes_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    with engine.begin() as conn:
        insert_ignoring_duplicates(
            conn,
            TABLE,
            [_row("old", now - timedelta(days=31)), _row("new", now - timedelta(days=29))],
        )
    report = partitions.apply_retention(engine, TABLE, now, retention_days=30)
    assert report.deleted_rows == 1 and report.dropped == [] and report.created == []
    with engine.connect() as conn:
        assert list(conn.execute(sa.select(RigTelemetry.msg_id)).scalars()) == ["new"]
    engine.dispose()


def test_gateways_starting_together_create_each_day_once(postgres_url: str) -> None:
    """Three gateways on one database make the coming days' partitions at the same moment."""
    import threading

    migrate.upgrade(postgres_url)
    engines = [make_engine(postgres_url) for _ in range(3)]
    start = datetime.now(UTC).date() + timedelta(days=30)  # days the migration did not make
    barrier, errors, created = threading.Barrier(3), [], []

    def gateway(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            report = partitions.ensure_partitions(engine, "rig_telemetry", start, ahead_days=5)
            created.extend(report.created)
        except Exception as exc:  # the failure under test: DuplicateTable
            errors.append(exc)

    threads = [threading.Thread(target=gateway, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        expected = [
            partitions.partition_name("rig_telemetry", start + timedelta(days=i)) for i in range(6)
        ]
        assert sorted(created) == expected  # each day made by exactly one gateway
        with engines[0].connect() as conn:
            days = partitions.day_partitions(conn, "rig_telemetry")
        assert all(start + timedelta(days=i) in days for i in range(6))
    finally:
        for engine in engines:
            engine.dispose()


def _gateway(url: str, folder: Path) -> Any:
    from controller.config import parse_config
    from controller.gateway import Gateway

    raw = {
        "farm": {"name": "parts", "data_dir": str(folder)},
        "sites": [{"id": "west"}],
        "rigs": [{"name": "rig-01", "site": "west", "address": "127.0.0.1:4028"}],
        "database": {"url": url, "telemetry_retention_days": 30},
        "metrics": {"enabled": False},
    }
    return Gateway(parse_config(raw, folder / "farm.toml"), base_dir=folder)


def test_gateway_housekeeping_drops_days_and_start_prepares_the_week(
    postgres_url: str, tmp_path: Path
) -> None:
    migrate.upgrade(postgres_url)
    gateway = _gateway(postgres_url, tmp_path)
    today = datetime.now(UTC).date()
    with gateway.engine.begin() as conn:
        # a gateway that was down: only partitions of long ago are left
        for day in partitions.day_partitions(conn, "rig_telemetry").values():
            conn.execute(sa.text(f'DROP TABLE "{day}"'))
    partitions.ensure_partitions(gateway.engine, "rig_telemetry", today - timedelta(days=40), 1)
    with gateway.engine.begin() as conn:
        insert_ignoring_duplicates(
            conn,
            TABLE,
            [
                _row("old", partitions.day_start(today - timedelta(days=40))),
                _row("now", datetime.now(UTC)),  # no partition yet: the default takes it
            ],
        )
    gateway._prepare_telemetry_partitions()
    with gateway.engine.connect() as conn:
        days = partitions.day_partitions(conn, "rig_telemetry")
    assert sorted(days)[-8:] == [today + timedelta(days=i) for i in range(8)]
    assert _where(gateway.engine)["now"] == f"rig_telemetry_p{today:%Y%m%d}"
    removed = gateway.housekeeping()
    assert removed == {
        "rig_telemetry": 0,
        "rig_telemetry_partitions_dropped": 2,  # the two days of 40 and 39 days ago
        "rig_telemetry_partitions_created": 0,
        "job_run": 0,
    }
    assert sorted(_where(gateway.engine)) == ["now"]
    gateway.engine.dispose()
