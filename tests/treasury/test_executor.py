"""Order lifecycle against the real ccxt Kraken class and a stateful local Kraken server."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.treasury.fake_exchange import ExchangeServer, FakeKraken, install_markets, load_recorded
from treasury.executor import Executor, ExecutorSettings
from treasury.ledger import Ledger
from treasury.venues.ccxt_venue import CcxtVenue

SYMBOL = "BTC/USDT"
PRICE = Decimal("73380.7")  # the recorded Kraken ask


class Rig:
    """Everything one test needs: the fake Kraken, the venue, the ledger, the executor."""

    def __init__(self, app: FakeKraken, venue: CcxtVenue, ledger: Ledger) -> None:
        self.app = app
        self.venue = venue
        self.ledger = ledger
        self.alerts: list[tuple[str, str]] = []
        self.slept: list[float] = []
        self.executor = Executor(
            ledger,
            {"kraken": venue},
            ExecutorSettings(lookup_attempts=3, rate_limit_attempts=3, not_found_grace_s=0),
            alert=lambda kind, msg: self.alerts.append((kind, msg)),
            sleep=self.slept.append,
        )

    def add_order_calls(self) -> int:
        return sum(1 for r in self.app.requests if r.path == "/0/private/AddOrder")


@pytest.fixture
def rig(exchange_responses: Path, tmp_path: Path) -> Iterator[Rig]:
    app = FakeKraken(load_recorded(exchange_responses, "kraken"))
    with ExchangeServer(app) as server:
        secret = base64.b64encode(b"test-secret").decode()
        venue = CcxtVenue.create("kraken", "key", secret, api_url=server.url, timeout_ms=400)
        venue.exchange.enableRateLimit = False
        install_markets(venue.exchange)
        ledger = Ledger(sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))
        ledger.create_tables()
        yield Rig(app, venue, ledger)


def test_timeout_is_resolved_by_lookup_never_by_resending(rig: Rig) -> None:
    rig.app.slow_next_order_s = 1.0  # the order is accepted, the answer comes too late
    record = rig.executor.place("kraken", SYMBOL, "sell", Decimal("0.05"), PRICE)
    assert rig.add_order_calls() == 1
    assert len(rig.app.orders) == 1
    assert record.status == "open"
    assert record.venue_order_id == rig.app.orders[record.client_order_id].id
    lookups = [r for r in rig.app.requests if r.path == "/0/private/OpenOrders"]
    assert lookups[-1].form()["cl_ord_id"] == record.client_order_id


def test_partial_fills_are_tracked(rig: Rig) -> None:
    record = rig.executor.place("kraken", SYMBOL, "sell", Decimal("0.05"), PRICE)
    cloid = record.client_order_id
    rig.app.fill(cloid, Decimal("0.02"), PRICE)
    assert rig.executor.resolve(record).status == "partially_filled"
    rig.app.fill(cloid, Decimal("0.03"), Decimal("73390"))
    final = rig.executor.resolve(rig.ledger.get_order(cloid))  # type: ignore[arg-type]
    assert final.status == "filled"
    assert final.filled == Decimal("0.05")
    fills = rig.ledger.fills_between(
        record.created_at.replace(year=2000), record.created_at.replace(year=2100)
    )
    assert [f.amount for f in fills] == [Decimal("0.02"), Decimal("0.03")]
    assert fills[1].price == Decimal("73390")  # the cost delta over the amount delta
    assert sum(f.fee for f in fills) == rig.app.orders[cloid].fee


def test_rate_limit_backs_off_looks_up_then_resends_once(rig: Rig) -> None:
    rig.app.fail_next_orders = ["EAPI:Rate limit exceeded", "EAPI:Rate limit exceeded"]
    record = rig.executor.place("kraken", SYMBOL, "sell", Decimal("0.05"), PRICE)
    assert rig.slept == [1.0, 2.0]  # exponential back-off
    assert rig.add_order_calls() == 3
    assert len(rig.app.orders) == 1 and record.status == "open"


def test_insufficient_funds_raises_a_clear_alert(rig: Rig) -> None:
    rig.app.fail_next_orders = ["EOrder:Insufficient funds"]
    record = rig.executor.place("kraken", SYMBOL, "sell", Decimal("5"), PRICE)
    assert record.status == "rejected"
    assert rig.alerts and rig.alerts[0][0] == "insufficient_funds"
    assert "insufficient funds" in rig.alerts[0][1]
    assert rig.app.orders == {}


def test_invalid_order_raises_an_alert(rig: Rig) -> None:
    rig.app.fail_next_orders = ["EOrder:Order minimum not met"]
    record = rig.executor.place("kraken", SYMBOL, "sell", Decimal("0.05"), PRICE)
    assert record.status == "rejected"
    assert rig.alerts[0][0] == "invalid_order"


def test_unreachable_lookup_leaves_order_unknown_and_blocks(rig: Rig) -> None:
    rig.app.slow_next_order_s = 1.0
    rig.app.fail_next_lookups = 10
    record = rig.executor.place("kraken", SYMBOL, "sell", Decimal("0.05"), PRICE)
    assert record.status == "unknown"
    assert rig.alerts[-1][0] == "order_unknown"
    assert rig.add_order_calls() == 1
    # Next start: the venue answers again; recovery settles it before anything else.
    rig.app.fail_next_lookups = 0
    assert rig.executor.recover() == []
    assert rig.ledger.get_order(record.client_order_id).status == "open"  # type: ignore[union-attr]


def test_cancel_open_orders_books_final_state_and_leaves_foreign_orders(rig: Rig) -> None:
    ours = rig.executor.place("kraken", SYMBOL, "sell", Decimal("0.05"), PRICE)
    rig.venue.create_limit_order(SYMBOL, "sell", Decimal("0.01"), PRICE, "fc0000000000000fff")
    rig.app.fill(ours.client_order_id, Decimal("0.01"), PRICE)
    assert rig.executor.cancel_open_orders("kraken", SYMBOL) == 1
    after = rig.ledger.get_order(ours.client_order_id)
    assert after is not None and after.status == "cancelled" and after.filled == Decimal("0.01")
    assert rig.app.orders["fc0000000000000fff"].status == "open"


def test_resting_order_stays_as_seen_while_the_venue_is_down(rig: Rig) -> None:
    record = rig.executor.place("kraken", SYMBOL, "sell", Decimal("0.05"), PRICE)
    rig.app.fail_next_lookups = 100
    assert rig.executor.resolve(record).status == "open"
    assert rig.ledger.get_order(record.client_order_id).status == "open"  # type: ignore[union-attr]


def test_absent_after_timeout_waits_for_the_grace_then_cancels(rig: Rig, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    now = [datetime.now(UTC)]
    executor = Executor(
        rig.ledger, {"kraken": rig.venue}, ExecutorSettings(not_found_grace_s=60),
        sleep=rig.slept.append, clock=lambda: now[0],
    )  # fmt: skip
    rig.app.fail_next_orders = ["EGeneral:Internal error"]  # unclear failure, nothing placed
    record = executor.place("kraken", SYMBOL, "sell", Decimal("0.05"), PRICE)
    assert record.status == "unknown" and "not at venue yet" in (record.note or "")
    assert executor.recover() == [rig.ledger.get_order(record.client_order_id)]  # still in grace
    now[0] += timedelta(seconds=61)
    assert executor.recover() == []
    final = rig.ledger.get_order(record.client_order_id)
    assert final is not None and final.status == "cancelled"
    assert final.note == "never reached the venue"
    assert rig.add_order_calls() == 1  # never resent
