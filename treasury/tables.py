"""SQLAlchemy tables owned by the `treasury` package, on its own MetaData (one Alembic history covers all)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

# Same naming convention in every package so Alembic emits stable constraint names on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for the `treasury` package's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


metadata = Base.metadata


# -- the ledger ------------------------------------------------------------------------------


class Money(TypeDecorator[Decimal]):
    """Exact money: NUMERIC(28, 12) where the database has it; text on SQLite, which would
    otherwise round-trip amounts through binary floats (73380.6 -> 73380.600000000006)."""

    impl = Numeric(28, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(28, 12))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = Decimal(str(value)).quantize(_SCALE)
        return format(amount, "f") if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


_SCALE = Decimal("0.000000000001")

ORDER_STATUSES = (
    "intent",
    "sent",
    "open",
    "partially_filled",
    "filled",
    "cancelled",
    "rejected",
    "unknown",
)
FINAL_ORDER_STATUSES = ("filled", "cancelled", "rejected")


class Deposit(Base):
    """Coins that arrived (exchange deposit, pool payout or estimate from hashrate)."""

    __tablename__ = "treasury_deposits"
    __table_args__ = (UniqueConstraint("venue", "reference", name="uq_treasury_deposits_ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    venue: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(128))
    currency: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money())
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(32), default="exchange")


class Order(Base):
    """One order, written as `intent` before it is sent; `client_order_id` is the idempotency key."""

    __tablename__ = "treasury_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    venue: Mapped[str] = mapped_column(String(64), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    amount: Mapped[Decimal] = mapped_column(Money())
    price: Mapped[Decimal] = mapped_column(Money())
    reference_price: Mapped[Decimal | None] = mapped_column(Money(), nullable=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    venue_order_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    filled: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    cost: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    fee: Mapped[Decimal] = mapped_column(Money(), default=Decimal(0))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Fill(Base):
    """One execution; (venue, trade_id) is unique so recording a fill twice is a no-op."""

    __tablename__ = "treasury_fills"
    __table_args__ = (UniqueConstraint("venue", "trade_id", name="uq_treasury_fills_trade"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    venue: Mapped[str] = mapped_column(String(64))
    trade_id: Mapped[str] = mapped_column(String(128))
    client_order_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("treasury_orders.client_order_id"), index=True
    )
    side: Mapped[str] = mapped_column(String(4))
    amount: Mapped[Decimal] = mapped_column(Money())
    price: Mapped[Decimal] = mapped_column(Money())
    fee: Mapped[Decimal] = mapped_column(Money())
    fee_currency: Mapped[str | None] = mapped_column(String(16), nullable=True)
    filled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OrderEvent(Base):
    """Audit trail of every status change of an order."""

    __tablename__ = "treasury_order_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("treasury_orders.client_order_id"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BalanceSnapshot(Base):
    """A venue balance as read before a decision."""

    __tablename__ = "treasury_balances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    venue: Mapped[str] = mapped_column(String(64), index=True)
    currency: Mapped[str] = mapped_column(String(16))
    free: Mapped[Decimal] = mapped_column(Money())
    total: Mapped[Decimal] = mapped_column(Money())
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Flag(Base):
    """Operator switches kept in the database (the kill switch)."""

    __tablename__ = "treasury_flags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
