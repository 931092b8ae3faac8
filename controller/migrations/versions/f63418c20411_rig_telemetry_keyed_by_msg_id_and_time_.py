"""rig_telemetry keyed by msg_id and time, partitioned by day on PostgreSQL

PostgreSQL requires the partition key in every unique constraint of a partitioned table, so the
surrogate `id` goes and (msg_id, time) becomes the key (the dedup key of MQTT ingest). The table
is rebuilt and its rows copied; on PostgreSQL the new table is range-partitioned by `time`, with
one partition per UTC day over the copied rows and the coming week, and a default partition.
The DDL is written out here (not imported from controller.partitions) so this revision keeps
doing what it did when the code moves on.

Revision ID: f63418c20411
Revises: 117533d6c2f9
Create Date: 2026-12-05 17:09:43.983726
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "f63418c20411"
down_revision: str | Sequence[str] | None = "117533d6c2f9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "msg_id, time, received_at, site, rig, mac, state, hashrate_ths, power_w, power_source,"
    " temp_c, chip_temp_c"
)
_AHEAD_DAYS = 7


def _sample_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("rig", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("hashrate_ths", sa.Float(), nullable=True),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("power_source", sa.String(length=16), nullable=True),
        sa.Column("temp_c", sa.Float(), nullable=True),
        sa.Column("chip_temp_c", sa.Float(), nullable=True),
    ]


def _day_bounds(day: date) -> str:
    upper = day + timedelta(days=1)
    return f"FROM ('{day:%Y-%m-%d} 00:00:00+00') TO ('{upper:%Y-%m-%d} 00:00:00+00')"


def _as_day(value: object) -> date:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def _keep_old_table(postgresql: bool) -> None:
    # index and constraint names are per schema on PostgreSQL: free them for the new table
    op.drop_index("ix_rig_telemetry_rig_time", table_name="rig_telemetry")
    op.rename_table("rig_telemetry", "rig_telemetry_old")
    if postgresql:
        op.execute(
            "ALTER TABLE rig_telemetry_old RENAME CONSTRAINT pk_rig_telemetry TO pk_rig_telemetry_old"
        )
        op.execute("ALTER TABLE rig_telemetry_old DROP CONSTRAINT uq_rig_telemetry_msg_id")


def upgrade() -> None:
    """Rebuild rig_telemetry keyed by (msg_id, time); day partitions on PostgreSQL."""
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    _keep_old_table(postgresql)
    op.create_table(
        "rig_telemetry",
        sa.Column("msg_id", sa.String(length=260), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        *_sample_columns(),
        sa.PrimaryKeyConstraint("msg_id", "time", name=op.f("pk_rig_telemetry")),
        postgresql_partition_by="RANGE (time)",
    )
    op.create_index("ix_rig_telemetry_rig_time", "rig_telemetry", ["site", "rig", "time"])
    if postgresql:
        op.execute("CREATE TABLE rig_telemetry_default PARTITION OF rig_telemetry DEFAULT")
        # offline (`--sql`) there are no rows to look at: today and the week ahead only
        oldest, newest = (
            (None, None)
            if op.get_context().as_sql
            else bind.execute(sa.text("SELECT min(time), max(time) FROM rig_telemetry_old")).one()
        )
        today = datetime.now(UTC).date()
        first = min(_as_day(oldest), today) if oldest is not None else today
        last = (
            max(_as_day(newest), today + timedelta(days=_AHEAD_DAYS))
            if newest is not None
            else today + timedelta(days=_AHEAD_DAYS)
        )
        day = first
        while day <= last:
            op.execute(
                f"CREATE TABLE rig_telemetry_p{day:%Y%m%d} PARTITION OF rig_telemetry"
                f" FOR VALUES {_day_bounds(day)}"
            )
            day += timedelta(days=1)
    op.execute(f"INSERT INTO rig_telemetry ({_COLUMNS}) SELECT {_COLUMNS} FROM rig_telemetry_old")
    op.drop_table("rig_telemetry_old")


def downgrade() -> None:
    """Back to one plain table with a surrogate id and a unique msg_id."""
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    op.drop_index("ix_rig_telemetry_rig_time", table_name="rig_telemetry")
    op.rename_table("rig_telemetry", "rig_telemetry_new")
    if postgresql:
        op.execute(
            "ALTER TABLE rig_telemetry_new RENAME CONSTRAINT pk_rig_telemetry TO pk_rig_telemetry_new"
        )
    op.create_table(
        "rig_telemetry",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("msg_id", sa.String(length=260), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        *_sample_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rig_telemetry")),
        sa.UniqueConstraint("msg_id", name="uq_rig_telemetry_msg_id"),
    )
    op.create_index("ix_rig_telemetry_rig_time", "rig_telemetry", ["site", "rig", "time"])
    # the same msg_id at two times was allowed by the new key, not by the old one: keep the first
    op.execute(
        f"INSERT INTO rig_telemetry ({_COLUMNS}) SELECT {_COLUMNS} FROM rig_telemetry_new"
        " WHERE true ORDER BY time ON CONFLICT (msg_id) DO NOTHING"
    )
    op.drop_table("rig_telemetry_new")  # on PostgreSQL this drops its partitions too
