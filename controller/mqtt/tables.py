"""Tables of the MQTT side, on the controller's MetaData: outbox, seen message ids, rig telemetry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import DDL

from controller.tables import Base

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer, "sqlite")


class MqttOutbox(Base):
    """A message that must reach the broker (sale reports, command acks).

    Written in the same transaction as the fact it reports; `acked_at` is set only when the
    broker's PUBACK for it arrived. A row is never deleted before that.
    """

    __tablename__ = "mqtt_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(128), unique=True)
    topic: Mapped[str] = mapped_column(String(512))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    qos: Mapped[int] = mapped_column(Integer, default=1)
    retain: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # end-to-end: the receiver's receipt arrived (only for rows enqueued with confirm=True)
    confirm: Mapped[bool] = mapped_column(default=False)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)

    __table_args__ = (Index("ix_mqtt_outbox_pending", "acked_at", "id"),)


class MqttSeenMessage(Base):
    """A message id a consumer has processed: a redelivery with the same id is dropped."""

    __tablename__ = "mqtt_seen_message"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class RigTelemetry(Base):
    """One telemetry sample of one rig, polled or ingested from MQTT (one row per message id).

    On PostgreSQL the table is range-partitioned by `time`, one partition per UTC day
    (controller/partitions.py creates them ahead and drops them past retention). PostgreSQL
    requires the partition key in every unique constraint, so the key is (msg_id, time): a
    redelivered message carries the same payload, hence the same id and time, and is still
    dropped. SQLite keeps a plain table with the same key.
    """

    __tablename__ = "rig_telemetry"

    # "<site>/<rig>/<payload id>" (MQTT) or "poll:<rig>:<time>": a payload id is only unique per rig
    msg_id: Mapped[str] = mapped_column(String(260), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    site: Mapped[str] = mapped_column(String(64))
    rig: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(17), default=None)
    state: Mapped[str] = mapped_column(String(16))
    hashrate_ths: Mapped[float | None] = mapped_column(Float, default=None)
    power_w: Mapped[float | None] = mapped_column(Float, default=None)
    power_source: Mapped[str | None] = mapped_column(String(16), default=None)
    temp_c: Mapped[float | None] = mapped_column(Float, default=None)
    chip_temp_c: Mapped[float | None] = mapped_column(Float, default=None)

    __table_args__ = (
        # a site's rigs over a time range (latest sample per rig, a rig's history); the daily
        # electricity cost reads whole days, which partition pruning bounds without an index
        Index("ix_rig_telemetry_rig_time", "site", "rig", "time"),
        {"postgresql_partition_by": "RANGE (time)"},
    )


# A table made with create_all (tests, scratch tools) gets the catch-all partition at once, so an
# insert never fails for want of a partition; migrated databases get it from the migration.
event.listen(
    RigTelemetry.__table__,
    "after_create",
    DDL(
        "CREATE TABLE IF NOT EXISTS %(fullname)s_default PARTITION OF %(fullname)s DEFAULT"
    ).execute_if(dialect="postgresql"),
)
