"""The treasury ledger: deposits, orders, fills, fees, balance snapshots and flags in the database.

Every public method is one database transaction, so a process killed at any line leaves either
the state before or the state after the call. Orders move through a checked state machine:

    intent -> sent -> open / partially_filled -> filled / cancelled / rejected
                   \\-> unknown (venue unreachable while resolving; retried on every start)

Recording a venue's view of an order is idempotent: fills are keyed by (venue, trade id).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from treasury.tables import (
    FINAL_ORDER_STATUSES,
    ORDER_STATUSES,
    BalanceSnapshot,
    Base,
    Deposit,
    Fill,
    Flag,
    Order,
    OrderEvent,
)
from treasury.venues.base import Balance, VenueOrder

logger = logging.getLogger(__name__)

_ALLOWED: dict[str, set[str]] = {
    "intent": {"sent", "open", "partially_filled", "filled", "cancelled", "rejected", "unknown"},
    "sent": {"open", "partially_filled", "filled", "cancelled", "rejected", "unknown"},
    "unknown": {"open", "partially_filled", "filled", "cancelled", "rejected", "unknown"},
    "open": {"open", "partially_filled", "filled", "cancelled"},
    "partially_filled": {"partially_filled", "filled", "cancelled"},
    "filled": {"filled"},
    "cancelled": {"cancelled"},
    "rejected": {"rejected"},
}


class LedgerError(Exception):
    """A ledger rule was broken (unknown order, forbidden status change, duplicate intent)."""


@dataclass(frozen=True)
class OrderRecord:
    """One ledger order."""

    client_order_id: str
    venue: str
    symbol: str
    side: str
    amount: Decimal
    price: Decimal
    reference_price: Decimal | None
    status: str
    venue_order_id: str | None
    filled: Decimal
    cost: Decimal
    fee: Decimal
    note: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_final(self) -> bool:
        """Filled, cancelled or rejected: the venue will never change it again."""
        return self.status in FINAL_ORDER_STATUSES


@dataclass(frozen=True)
class FillRecord:
    """One ledger fill."""

    venue: str
    trade_id: str
    client_order_id: str
    side: str
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str | None
    filled_at: datetime


@dataclass(frozen=True)
class DepositRecord:
    """One ledger deposit (coins mined and received)."""

    venue: str
    reference: str
    currency: str
    amount: Decimal
    received_at: datetime
    source: str


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_UNFINISHED_STATUSES = tuple(s for s in ORDER_STATUSES if s not in FINAL_ORDER_STATUSES)


def _now() -> datetime:
    return datetime.now(UTC)


def status_from_venue(order: VenueOrder) -> str:
    """Ledger status for a venue's order status and fill."""
    if order.status == "open":
        return "partially_filled" if order.filled > 0 else "open"
    if order.status == "closed":
        return "filled"
    if order.status == "rejected":
        return "rejected"
    return "cancelled"


class Ledger:
    """Typed access to the treasury tables on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create_tables(self) -> None:
        """Create the treasury tables (tests and first runs; production uses Alembic)."""
        Base.metadata.create_all(self.engine)

    # -- deposits --------------------------------------------------------------------------
    def record_deposit(
        self,
        venue: str,
        reference: str,
        currency: str,
        amount: Decimal,
        received_at: datetime,
        source: str = "exchange",
    ) -> bool:
        """Record a deposit once; returns False when (venue, reference) was already recorded."""
        if amount <= 0:
            raise LedgerError(f"deposit {reference} on {venue}: amount {amount} is not positive")
        with self._sessions.begin() as session:
            exists = session.scalar(
                select(Deposit.id).where(Deposit.venue == venue, Deposit.reference == reference)
            )
            if exists is not None:
                return False
            session.add(
                Deposit(
                    venue=venue,
                    reference=reference,
                    currency=currency,
                    amount=amount,
                    received_at=received_at,
                    source=source,
                )
            )
            logger.info("deposit venue=%s ref=%s amount=%s %s", venue, reference, amount, currency)
            return True

    def deposits_between(self, start: datetime, end: datetime) -> list[DepositRecord]:
        """Deposits received in [start, end)."""
        with self._sessions() as session:
            rows = session.scalars(
                select(Deposit)
                .where(Deposit.received_at >= start, Deposit.received_at < end)
                .order_by(Deposit.received_at)
            ).all()
            return [
                DepositRecord(
                    r.venue, r.reference, r.currency, r.amount, utc(r.received_at), r.source
                )
                for r in rows
            ]

    # -- orders ----------------------------------------------------------------------------
    def record_intent(
        self,
        client_order_id: str,
        venue: str,
        symbol: str,
        side: str,
        amount: Decimal,
        price: Decimal,
        reference_price: Decimal | None = None,
        now: datetime | None = None,
    ) -> OrderRecord:
        """Write the order as `intent` before anything reaches the venue."""
        at = now or _now()
        with self._sessions.begin() as session:
            if session.scalar(select(Order.id).where(Order.client_order_id == client_order_id)):
                raise LedgerError(f"client order id {client_order_id} is already in the ledger")
            row = Order(
                client_order_id=client_order_id,
                venue=venue,
                symbol=symbol,
                side=side,
                amount=amount,
                price=price,
                reference_price=reference_price,
                status="intent",
                filled=Decimal(0),
                cost=Decimal(0),
                fee=Decimal(0),
                created_at=at,
                updated_at=at,
            )
            session.add(row)
            session.add(OrderEvent(client_order_id=client_order_id, to_status="intent", at=at))
            session.flush()
            return _order_record(row)

    def transition(
        self, client_order_id: str, to_status: str, detail: str | None = None
    ) -> OrderRecord:
        """Move an order to `to_status` (checked against the state machine)."""
        with self._sessions.begin() as session:
            row = self._order_row(session, client_order_id)
            self._move(session, row, to_status, detail)
            return _order_record(row)

    def apply_venue_order(
        self, venue_order: VenueOrder, now: datetime | None = None
    ) -> OrderRecord:
        """Bring the ledger order in line with the venue's view: status, fills and fees."""
        if venue_order.client_order_id is None:
            raise LedgerError(f"venue order {venue_order.order_id} carries no client order id")
        at = now or _now()
        with self._sessions.begin() as session:
            row = self._order_row(session, venue_order.client_order_id)
            row.venue_order_id = venue_order.order_id
            self._record_fills(session, row, venue_order, at)
            row.filled = venue_order.filled
            row.cost = venue_order.cost
            row.fee = venue_order.fee
            self._move(session, row, status_from_venue(venue_order), None, at)
            return _order_record(row)

    def get_order(self, client_order_id: str) -> OrderRecord | None:
        """One order by client order id."""
        with self._sessions() as session:
            row = session.scalar(select(Order).where(Order.client_order_id == client_order_id))
            return None if row is None else _order_record(row)

    def orders(self, venue: str | None = None, limit: int | None = None) -> list[OrderRecord]:
        """Orders, newest first."""
        with self._sessions() as session:
            query = select(Order).order_by(Order.id.desc())
            if venue is not None:
                query = query.where(Order.venue == venue)
            if limit is not None:
                query = query.limit(limit)
            return [_order_record(r) for r in session.scalars(query).all()]

    def unresolved_orders(self, venue: str | None = None) -> list[OrderRecord]:
        """Orders not yet final: the ones to reconcile against the venue before anything else."""
        with self._sessions() as session:
            # IN over the statuses still open (not NOT IN over the final ones): the status index
            # then finds the few open orders instead of reading every order ever placed
            query = select(Order).where(Order.status.in_(_UNFINISHED_STATUSES))
            if venue is not None:
                query = query.where(Order.venue == venue)
            return [_order_record(r) for r in session.scalars(query.order_by(Order.id)).all()]

    # -- fills -----------------------------------------------------------------------------
    def fills_between(
        self, start: datetime, end: datetime, side: str | None = "sell"
    ) -> list[FillRecord]:
        """Fills in [start, end), oldest first."""
        with self._sessions() as session:
            query = select(Fill).where(Fill.filled_at >= start, Fill.filled_at < end)
            if side is not None:
                query = query.where(Fill.side == side)
            rows = session.scalars(query.order_by(Fill.filled_at, Fill.id)).all()
            return [
                FillRecord(
                    r.venue,
                    r.trade_id,
                    r.client_order_id,
                    r.side,
                    r.amount,
                    r.price,
                    r.fee,
                    r.fee_currency,
                    utc(r.filled_at),
                )
                for r in rows
            ]

    def committed_between(
        self, start: datetime, end: datetime, side: str = "sell", venue: str | None = None
    ) -> Decimal:
        """Amount filled plus amount still resting or unresolved on orders created in [start, end).

        The daily limit counts what may still fill, not only what has, so a crash or an open
        order can never let the day's total slip past the cap.
        """
        with self._sessions() as session:
            query = select(Order).where(
                Order.side == side, Order.created_at >= start, Order.created_at < end
            )
            if venue is not None:
                query = query.where(Order.venue == venue)
            total = Decimal(0)
            for row in session.scalars(query).all():
                total += row.amount if row.status not in FINAL_ORDER_STATUSES else row.filled
            return total

    # -- balances and flags ----------------------------------------------------------------
    def snapshot_balances(
        self, venue: str, balances: dict[str, Balance], now: datetime | None = None
    ) -> None:
        """Store the venue's balances as read before a decision."""
        at = now or _now()
        with self._sessions.begin() as session:
            for balance in balances.values():
                session.add(
                    BalanceSnapshot(
                        venue=venue,
                        currency=balance.currency,
                        free=balance.free,
                        total=balance.total,
                        taken_at=at,
                    )
                )

    def latest_balance(self, venue: str, currency: str) -> Balance | None:
        """The newest stored balance of one currency on one venue."""
        with self._sessions() as session:
            row = session.scalar(
                select(BalanceSnapshot)
                .where(BalanceSnapshot.venue == venue, BalanceSnapshot.currency == currency)
                .order_by(BalanceSnapshot.id.desc())
                .limit(1)
            )
            return None if row is None else Balance(row.currency, row.free, row.total)

    def set_flag(self, name: str, value: str) -> None:
        """Set an operator flag (e.g. kill_switch=on)."""
        with self._sessions.begin() as session:
            row = session.get(Flag, name)
            if row is None:
                session.add(Flag(name=name, value=value, updated_at=_now()))
            else:
                row.value = value
                row.updated_at = _now()

    def get_flag(self, name: str) -> str | None:
        """An operator flag's value, None when never set."""
        with self._sessions() as session:
            row = session.get(Flag, name)
            return None if row is None else row.value

    def fee_total(self, start: datetime, end: datetime) -> Decimal:
        """Fees paid on fills in [start, end)."""
        with self._sessions() as session:
            # Summed here, not in SQL: SQLite would add the text-stored amounts as floats.
            fees = session.scalars(
                select(Fill.fee).where(Fill.filled_at >= start, Fill.filled_at < end)
            ).all()
            return sum(fees, Decimal(0))

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _order_row(session: Session, client_order_id: str) -> Order:
        row = session.scalar(select(Order).where(Order.client_order_id == client_order_id))
        if row is None:
            raise LedgerError(f"client order id {client_order_id} is not in the ledger")
        return row

    @staticmethod
    def _move(
        session: Session,
        row: Order,
        to_status: str,
        detail: str | None,
        at: datetime | None = None,
    ) -> None:
        if to_status not in _ALLOWED.get(row.status, set()):
            raise LedgerError(
                f"order {row.client_order_id}: status {row.status} cannot become {to_status}"
            )
        if detail:
            row.note = detail
        if to_status == row.status and not detail:
            return
        when = at or _now()
        session.add(
            OrderEvent(
                client_order_id=row.client_order_id,
                from_status=row.status,
                to_status=to_status,
                detail=detail,
                at=when,
            )
        )
        logger.info(
            "order status cloid=%s from=%s to=%s detail=%s",
            row.client_order_id,
            row.status,
            to_status,
            detail,
        )
        row.status = to_status
        row.updated_at = when

    @staticmethod
    def _record_fills(session: Session, row: Order, venue_order: VenueOrder, at: datetime) -> None:
        known = {
            t
            for t in session.scalars(
                select(Fill.trade_id).where(Fill.client_order_id == row.client_order_id)
            ).all()
        }
        if venue_order.fills:
            for fill in venue_order.fills:
                if fill.trade_id in known:
                    continue
                session.add(
                    Fill(
                        venue=row.venue,
                        trade_id=fill.trade_id,
                        client_order_id=row.client_order_id,
                        side=row.side,
                        amount=fill.amount,
                        price=fill.price,
                        fee=fill.fee,
                        fee_currency=fill.fee_currency,
                        filled_at=fill.timestamp or at,
                    )
                )
            return
        # The venue reported only cumulative totals: book the increase as one fill keyed by
        # the cumulative amount, so replaying the same view never books it twice.
        delta = venue_order.filled - row.filled
        if delta <= 0:
            return
        trade_id = f"{venue_order.order_id}:cum:{venue_order.filled.normalize()}"
        if trade_id in known:
            return
        cost_delta = venue_order.cost - row.cost
        price = cost_delta / delta if cost_delta > 0 else (venue_order.price or row.price)
        session.add(
            Fill(
                venue=row.venue,
                trade_id=trade_id,
                client_order_id=row.client_order_id,
                side=row.side,
                amount=delta,
                price=price,
                fee=venue_order.fee - row.fee,
                fee_currency=venue_order.fee_currency,
                filled_at=at,
            )
        )


def _order_record(row: Order) -> OrderRecord:
    return OrderRecord(
        client_order_id=row.client_order_id,
        venue=row.venue,
        symbol=row.symbol,
        side=row.side,
        amount=row.amount,
        price=row.price,
        reference_price=row.reference_price,
        status=row.status,
        venue_order_id=row.venue_order_id,
        filled=row.filled,
        cost=row.cost,
        fee=row.fee,
        note=row.note,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
    )
