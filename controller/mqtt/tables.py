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
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

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
    """One telemetry sample of one rig, as ingested from MQTT (one row per message id)."""

    __tablename__ = "rig_telemetry"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # "<site>/<rig>/<payload id>": a payload id is only unique per rig
    msg_id: Mapped[str] = mapped_column(String(260))
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
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
        UniqueConstraint("msg_id", name="uq_rig_telemetry_msg_id"),
        Index("ix_rig_telemetry_rig_time", "site", "rig", "time"),
    )
