"""SQLAlchemy tables owned by the `forecasting` package, on its own MetaData (one Alembic history covers all)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, Integer, MetaData, Numeric, String, UniqueConstraint
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
    """Declarative base for the `forecasting` package's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


class ElectricityPrice(Base):
    """One hourly electricity price: cleared day-ahead, real-time, or our forecast (per MWh)."""

    __tablename__ = "electricity_price"
    __table_args__ = (UniqueConstraint("market", "zone", "kind", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    market: Mapped[str] = mapped_column(String(32))
    zone: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # day_ahead / real_time / forecast
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # hour start, UTC
    price: Mapped[Decimal] = mapped_column(Numeric(28, 12))
    currency: Mapped[str] = mapped_column(String(3))
    source: Mapped[str] = mapped_column(String(128), default="")
    inserted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
