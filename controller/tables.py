"""SQLAlchemy tables owned by the `controller` package, on its own MetaData (one Alembic history covers all)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Same naming convention in every package so Alembic emits stable constraint names on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for the `controller` package's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class RigRecord(Base):
    """A rig the farm knows: config name, place, and identity (MAC) once it has been read."""

    __tablename__ = "rig"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    rack: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(255))
    family: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(17), index=True)
    first_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PlanSlot(Base):
    """The plan: whether a rig should hash during one hour (UTC hour start)."""

    __tablename__ = "plan_slot"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rig: Mapped[str] = mapped_column(String(64))
    hour_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    desired: Mapped[str] = mapped_column(String(16))
    plan_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("rig", "hour_start", name="uq_plan_slot_rig_hour"),
        Index("ix_plan_slot_hour", "hour_start"),
    )


class Override(Base):
    """An operator's order that wins over the plan for its window (rig, rack or site)."""

    __tablename__ = "plan_override"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_kind: Mapped[str] = mapped_column(String(8))
    target: Mapped[str] = mapped_column(String(64))
    desired: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)


class RigControl(Base):
    """What reconcile last asked of a rig and whether the rig obeyed."""

    __tablename__ = "rig_control"

    rig: Mapped[str] = mapped_column(String(64), primary_key=True)
    desired: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobRun(Base):
    """One run of a scheduled job: for health metrics and to prove catch-up runs once."""

    __tablename__ = "job_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[float] = mapped_column()
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(String(500))
    # which gateway ran it (`gateway_id`): several gateways share one database (issue 8)
    gateway: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_job_run_job_started", "job", "started_at"),)


class SitePowerTargetRow(Base):
    """A central plan's power target for one site (controller/site_targets.py), and its ack.

    A central planner writes the request columns (directly, over MQTT or with the CLI); the
    site's gateway reads them on each reconcile and fills the ack columns (`state` onwards).
    """

    __tablename__ = "site_power_target"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))  # "to_kw" or "by_kw"
    kw: Mapped[float] = mapped_column(Float)
    # server defaults: a planner inserting rows by hand may leave these out
    ramp_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    issuer: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str] = mapped_column(String(8), default="db", server_default="db")  # mqtt/cli/db
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # ---- written by the gateway ----
    superseded_by: Mapped[str | None] = mapped_column(String(128), default=None)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    baseline_kw: Mapped[float | None] = mapped_column(Float, default=None)
    cap_kw: Mapped[float | None] = mapped_column(Float, default=None)
    state: Mapped[str | None] = mapped_column(String(16), default=None)
    state_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    achieved_kw: Mapped[float | None] = mapped_column(Float, default=None)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    __table_args__ = (Index("ix_site_power_target_site_ends", "site", "ends_at"),)
