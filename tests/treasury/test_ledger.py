"""Ledger: the order state machine, idempotent fills, deposits, daily totals; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from treasury.ledger import Ledger, LedgerError
from treasury.venues.base import Balance, VenueFill, VenueOrder

T0 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


def venue_order(filled: str, status: str = "open", fills: tuple[VenueFill, ...] = ()) -> VenueOrder:
    f = Decimal(filled)
    return VenueOrder(
        venue="kraken",
        order_id="OL7LNO-R4SAD-6UINEU",
        client_order_id="fc00000000000000aa",
        symbol="BTC/USDT",
        side="sell",
        amount=Decimal("0.1"),
        price=Decimal("73380.6"),
        filled=f,
        status=status,  # type: ignore[arg-type]
        cost=f * Decimal("73380.6"),
        fee=f * Decimal("73380.6") * Decimal("0.0025"),
        fee_currency="USDT",
        fills=fills,
    )


def exercise(ledger: Ledger) -> None:
    ledger.create_tables()
    ledger.record_intent(
        "fc00000000000000aa", "kraken", "BTC/USDT", "sell", Decimal("0.1"), Decimal("73380.6"),
        Decimal("73000"), now=T0,
    )  # fmt: skip
    with pytest.raises(LedgerError, match="already in the ledger"):
        ledger.record_intent(
            "fc00000000000000aa", "kraken", "BTC/USDT", "sell", Decimal("1"), Decimal("1"), now=T0
        )
    with pytest.raises(LedgerError, match="intent cannot become"):
        ledger.transition("fc00000000000000aa", "intent")
    ledger.transition("fc00000000000000aa", "sent")
    # Cumulative-only reports: each new total books one fill, replays book nothing.
    rec = ledger.apply_venue_order(venue_order("0.04"), now=T0)
    assert rec.status == "partially_filled" and rec.filled == Decimal("0.04")
    ledger.apply_venue_order(venue_order("0.04"), now=T0)
    rec = ledger.apply_venue_order(venue_order("0.1", "closed"), now=T0)
    assert rec.status == "filled" and rec.is_final
    fills = ledger.fills_between(T0, T0.replace(day=4))
    assert [f.amount for f in fills] == [Decimal("0.04"), Decimal("0.06")]
    assert sum(f.amount * f.price for f in fills) == Decimal("0.1") * Decimal("73380.6")
    assert ledger.fee_total(T0, T0.replace(day=4)) == Decimal("0.1") * Decimal("73380.6") * Decimal(
        "0.0025"
    )
    with pytest.raises(LedgerError, match="filled cannot become cancelled"):
        ledger.transition("fc00000000000000aa", "cancelled")
    assert ledger.unresolved_orders() == []
    assert ledger.committed_between(T0, T0.replace(day=4)) == Decimal("0.1")

    # Deposits are idempotent per (venue, reference).
    assert ledger.record_deposit("kraken", "tx1", "BTC", Decimal("0.0123"), T0)
    assert not ledger.record_deposit("kraken", "tx1", "BTC", Decimal("0.0123"), T0)
    deposits = ledger.deposits_between(T0, T0.replace(day=4))
    assert [(d.reference, d.amount, d.received_at) for d in deposits] == [
        ("tx1", Decimal("0.0123"), T0)
    ]

    ledger.snapshot_balances("kraken", {"BTC": Balance("BTC", Decimal("0.5"), Decimal("0.6"))}, T0)
    assert ledger.latest_balance("kraken", "BTC") == Balance("BTC", Decimal("0.5"), Decimal("0.6"))
    ledger.set_flag("kill_switch", "on")
    assert ledger.get_flag("kill_switch") == "on"


def test_ledger_on_sqlite(tmp_path: Path) -> None:
    exercise(Ledger(sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}")))


@pytest.mark.postgres
def test_ledger_on_postgresql(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        exercise(Ledger(engine))
        with engine.connect() as conn:
            scale = conn.execute(
                sa.text(
                    "select numeric_scale from information_schema.columns "
                    "where table_name='treasury_fills' and column_name='amount' "
                    "and table_schema = current_schema()"
                )
            ).scalar_one()
        assert scale == 12
    finally:
        engine.dispose()


def test_per_trade_fills_are_idempotent(tmp_path: Path) -> None:
    ledger = Ledger(sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))
    ledger.create_tables()
    ledger.record_intent(
        "fc00000000000000aa",
        "kraken",
        "BTC/USDT",
        "sell",
        Decimal("0.1"),
        Decimal("73380.6"),
        now=T0,
    )
    trade = VenueFill(
        "TWA6QJ-ZO4EM-6QIHQJ", Decimal("0.1"), Decimal("73380.6"), Decimal("18.35"), "USDT", T0
    )
    for _ in range(3):
        ledger.apply_venue_order(venue_order("0.1", "closed", (trade,)), now=T0)
    fills = ledger.fills_between(T0, T0.replace(day=4))
    assert [(f.trade_id, f.fee) for f in fills] == [("TWA6QJ-ZO4EM-6QIHQJ", Decimal("18.35"))]


def test_open_orders_count_against_the_day(tmp_path: Path) -> None:
    ledger = Ledger(sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))
    ledger.create_tables()
    ledger.record_intent(
        "fc00000000000000aa", "kraken", "BTC/USDT", "sell", Decimal("0.3"), Decimal("1"), now=T0
    )
    ledger.record_intent(
        "fc00000000000000bb", "kraken", "BTC/USDT", "sell", Decimal("0.2"), Decimal("1"), now=T0
    )
    ledger.transition("fc00000000000000bb", "cancelled", "never reached the venue")
    # The unresolved intent counts whole, the cancelled one by its (zero) fill.
    assert ledger.committed_between(T0, T0.replace(day=4)) == Decimal("0.3")
    assert ledger.get_order("fc00000000000000bb").note == "never reached the venue"  # type: ignore[union-attr]
