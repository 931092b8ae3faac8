"""Daily time partitions of `rig_telemetry` on PostgreSQL: created ahead, dropped whole past retention.

At 5,000-50,000 rigs polled every 30 s the table takes 14-144 million rows a day. One partition
per UTC day keeps each partition's indexes small enough to stay in memory while it is written,
lets a query over a time range read only the days it needs (partition pruning), and makes
retention a `DROP TABLE` of whole days instead of a `DELETE` of millions of rows (which would
bloat the table and the WAL). A `_default` partition catches rows no day partition covers (a
rig with a wrong clock, or days past the ones created ahead), so an insert never fails.

SQLite keeps the plain table and the `DELETE` path. With `database.telemetry_partitioning =
"timescaledb"` the table is a TimescaleDB hypertable the operator converted (docs/scaling.md):
TimescaleDB makes its own chunks, and retention calls its `drop_chunks`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from sqlalchemy import Connection, Engine, Table, delete, text

log = logging.getLogger(__name__)

PartitioningMode = Literal["native", "timescaledb"]

# Tables range-partitioned by a `time` column, one partition per UTC day.
PARTITIONED_TABLES: tuple[str, ...] = ("rig_telemetry",)
DEFAULT_AHEAD_DAYS = 7
# Partition DDL waits at most this long for its lock: a long report query must not make every
# telemetry insert queue behind a DROP; the next housekeeping run tries again.
LOCK_TIMEOUT = "10s"

_DAY_SUFFIX = re.compile(r"_p(\d{8})$")


def partition_name(table: str, day: date) -> str:
    """The name of `table`'s partition holding `day` (UTC), e.g. rig_telemetry_p20261205."""
    return f"{table}_p{day:%Y%m%d}"


def default_partition_name(table: str) -> str:
    """The catch-all partition of `table`."""
    return f"{table}_default"


def is_partition_name(name: str) -> bool:
    """True for a partition farmctl manages (day or default), which the models do not declare."""
    for table in PARTITIONED_TABLES:
        if name == default_partition_name(table):
            return True
        match = _DAY_SUFFIX.search(name)
        if match and name[: match.start()] == table:
            return True
    return False


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day` (a partition's lower bound)."""
    return datetime.combine(day, time(0), tzinfo=UTC)


@dataclass(slots=True)
class RetentionReport:
    """What one retention run did to one table."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    moved_rows: int = 0  # rows moved from the default partition into a new day partition
    deleted_rows: int = 0  # rows removed by DELETE (SQLite, default partition, fallback)


def is_partitioned(conn: Connection, table: str) -> bool:
    """True when `table` is a natively partitioned PostgreSQL table (False on SQLite)."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.execute(
        text("SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:t)"),
        {"t": table},
    ).first()
    return found is not None


def _schema_of(conn: Connection, table: str) -> str:
    schema = conn.execute(
        text(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass(:t)"
        ),
        {"t": table},
    ).scalar_one()
    return str(schema)


def _exists(conn: Connection, schema: str, name: str) -> bool:
    return (
        conn.execute(text("SELECT to_regclass(:n)"), {"n": f"{schema}.{name}"}).scalar() is not None
    )


def _qualified(conn: Connection, schema: str, name: str) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}"


def day_partitions(conn: Connection, table: str) -> dict[date, str]:
    """The day partitions of `table` that farmctl named, by day (PostgreSQL)."""
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    ).scalars()
    found: dict[date, str] = {}
    for name in names:
        match = _DAY_SUFFIX.search(name)
        if match and name[: match.start()] == table:
            found[datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return found


def _bounds(day: date) -> str:
    # bounds in UTC whatever the session's TimeZone, built from a date (no user text)
    lower, upper = day_start(day), day_start(day + timedelta(days=1))
    return f"FROM ('{lower:%Y-%m-%d %H:%M:%S}+00') TO ('{upper:%Y-%m-%d %H:%M:%S}+00')"


def _one_maintainer(conn: Connection, table: str) -> None:
    """Serialize partition changes of `table` across gateways sharing the database (issue 8):
    gateways starting together would otherwise create the same day twice (DuplicateTable).
    A transaction-scoped advisory lock; the checks after it see what the previous holder
    committed (READ COMMITTED takes a new snapshot per statement)."""
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"farmctl.partitions:{table}"}
    )


def create_day_partition(engine: Engine, table: str, day: date) -> tuple[bool, int]:
    """Create `table`'s partition for `day` unless it exists; returns (created, rows moved).

    Rows of that day already in the default partition (written before the partition existed)
    are moved into it in the same transaction: PostgreSQL refuses a new partition whose range
    the default partition still holds rows of.
    """
    with engine.begin() as conn:
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        _one_maintainer(conn, table)
        if day in day_partitions(conn, table):
            return False, 0
        schema = _schema_of(conn, table)
        parent = _qualified(conn, schema, table)
        child = _qualified(conn, schema, partition_name(table, day))
        default = _qualified(conn, schema, default_partition_name(table))
        has_default = _exists(conn, schema, default_partition_name(table))
        lower, upper = day_start(day), day_start(day + timedelta(days=1))
        stray = 0
        if has_default:
            stray = int(
                conn.execute(
                    text(f"SELECT count(*) FROM {default} WHERE time >= :lo AND time < :hi"),
                    {"lo": lower, "hi": upper},
                ).scalar_one()
            )
        if stray == 0:
            conn.execute(
                text(f"CREATE TABLE {child} PARTITION OF {parent} FOR VALUES {_bounds(day)}")
            )
            return True, 0
        # Build the day as a plain table, move the stray rows into it, then attach it (the
        # attach creates the parent's indexes on it and checks the default no longer overlaps).
        conn.execute(text(f"CREATE TABLE {child} (LIKE {parent} INCLUDING DEFAULTS)"))
        conn.execute(
            text(
                f"WITH moved AS (DELETE FROM {default} WHERE time >= :lo AND time < :hi"
                f" RETURNING *) INSERT INTO {child} SELECT * FROM moved"
            ),
            {"lo": lower, "hi": upper},
        )
        conn.execute(
            text(f"ALTER TABLE {parent} ATTACH PARTITION {child} FOR VALUES {_bounds(day)}")
        )
        log.info(
            "telemetry partition created with rows from the default partition",
            extra={"partition": partition_name(table, day), "rows": stray},
        )
        return True, stray


def ensure_partitions(
    engine: Engine, table: str, today: date, ahead_days: int = DEFAULT_AHEAD_DAYS
) -> RetentionReport:
    """Create `table`'s partitions from `today` to `today + ahead_days` that do not exist yet."""
    report = RetentionReport()
    for offset in range(ahead_days + 1):
        day = today + timedelta(days=offset)
        created, moved = create_day_partition(engine, table, day)
        if created:
            report.created.append(partition_name(table, day))
            report.moved_rows += moved
    return report


def drop_partitions_before(engine: Engine, table: str, cutoff: datetime) -> RetentionReport:
    """Drop every day partition of `table` that ends at or before `cutoff`; DELETE the default's.

    A day is dropped only once all of it is past the cutoff, so a row is kept at least the
    retention period and at most one day longer.
    """
    report = RetentionReport()
    with engine.connect() as conn:
        days = day_partitions(conn, table)
        schema = _schema_of(conn, table)
    for day, name in sorted(days.items()):
        if day_start(day + timedelta(days=1)) > cutoff:
            continue
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            _one_maintainer(conn, table)
            conn.execute(text(f"DROP TABLE IF EXISTS {_qualified(conn, schema, name)}"))
        report.dropped.append(name)
    with engine.begin() as conn:
        if _exists(conn, schema, default_partition_name(table)):
            result = conn.execute(
                text(
                    f"DELETE FROM {_qualified(conn, schema, default_partition_name(table))}"
                    " WHERE time < :cutoff"
                ),
                {"cutoff": cutoff},
            )
            report.deleted_rows = int(result.rowcount or 0)
    return report


def apply_retention(
    engine: Engine,
    table: Table,
    now: datetime,
    retention_days: int,
    mode: PartitioningMode = "native",
    ahead_days: int = DEFAULT_AHEAD_DAYS,
) -> RetentionReport:
    """Keep `table` (with a `time` column) to `retention_days`, the cheapest way the database allows.

    Native partitions on PostgreSQL: drop the days past retention, create the coming days'
    partitions. TimescaleDB: `drop_chunks` (the hypertable makes its own chunks). Otherwise
    (SQLite, or a PostgreSQL table that is not partitioned): DELETE the old rows.
    """
    cutoff = now - timedelta(days=retention_days)
    with engine.connect() as conn:
        dialect = conn.dialect.name
        partitioned = is_partitioned(conn, table.name)
    if dialect == "postgresql" and mode == "timescaledb":
        # Not tested here (TimescaleDB is not installed on the development machine).
        with engine.begin() as conn:
            dropped = conn.execute(
                text("SELECT drop_chunks(CAST(:t AS regclass), older_than => :cutoff)"),
                {"t": table.name, "cutoff": cutoff},
            ).scalars()
            return RetentionReport(dropped=[str(d) for d in dropped])
    if partitioned:
        report = drop_partitions_before(engine, table.name, cutoff)
        ahead = ensure_partitions(engine, table.name, now.astimezone(UTC).date(), ahead_days)
        report.created, report.moved_rows = ahead.created, ahead.moved_rows
        return report
    with engine.begin() as conn:
        result = conn.execute(delete(table).where(table.c.time < cutoff))
    return RetentionReport(deleted_rows=int(result.rowcount or 0))
