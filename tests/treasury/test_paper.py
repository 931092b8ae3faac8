"""Paper venue: fills only when the price reaches the limit, partial by traded volume, fees, persistence."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.treasury.fake_exchange import load_recorded
from treasury.venues.base import OrderRulesError, VenueInsufficientFunds, VenueInvalidOrder
from treasury.venues.paper import DEFAULT_RULES, PaperVenue, PriceBar

CLOID = "fc0000000000000001"


def kraken_bars(exchange_responses: Path) -> list[PriceBar]:
    """The recorded Kraken XBTUSDT hourly bars: [time, open, high, low, close, vwap, volume, n]."""
    reply = load_recorded(exchange_responses, "kraken")["methods"]["fetchOHLCV"][0]["httpResponse"]
    return [
        PriceBar(
            datetime.fromtimestamp(row[0], UTC),
            Decimal(row[1]),
            Decimal(row[2]),
            Decimal(row[3]),
            Decimal(row[4]),
            Decimal(row[6]),
        )
        for row in reply["result"]["XBTUSDT"]
    ]


def make_paper(tmp_path: Path, btc: str = "2") -> PaperVenue:
    rules = DEFAULT_RULES.__class__(**{**DEFAULT_RULES.__dict__, "symbol": "BTC/USDT"})
    return PaperVenue(
        rules=rules,
        state_path=tmp_path / "paper.json",
        initial_balances={"BTC": Decimal(btc), "USDT": Decimal(0)},
    )


def test_no_fill_unless_price_crosses(tmp_path: Path, exchange_responses: Path) -> None:
    bars = kraken_bars(exchange_responses)
    paper = make_paper(tmp_path)
    paper.on_bar(bars[0])  # close 43361.1
    order = paper.create_limit_order("BTC/USDT", "sell", Decimal("0.5"), Decimal("43600"), CLOID)
    assert order.status == "open" and order.filled == 0
    # Highs 43529.2, 43594.6, 43500.5, 43539.7 never reach 43600.
    for bar in bars[1:5]:
        assert paper.on_bar(bar) == []
    found = paper.fetch_order_by_client_id(CLOID, "BTC/USDT")
    assert found is not None and found.filled == 0
    # The last recorded bar (high 42905.4) does not either.
    assert paper.on_bar(bars[5]) == []


def test_partial_fills_by_traded_volume(tmp_path: Path, exchange_responses: Path) -> None:
    bars = kraken_bars(exchange_responses)
    paper = make_paper(tmp_path)
    paper.on_bar(bars[0])
    paper.create_limit_order("BTC/USDT", "sell", Decimal("2"), Decimal("43500"), CLOID)
    # Bar 2: high 43529.2 >= 43500, volume 12.51327406 -> 10 % of it (to 8 decimals) fills
    # at the limit, maker fee 0.16 % rounded to 8 decimals.
    fills = paper.on_bar(bars[1])
    assert [(f.amount, f.price) for f in fills] == [(Decimal("1.25132740"), Decimal("43500"))]
    assert fills[0].fee == Decimal("87.09238704")
    assert paper.on_bar(bars[1]) == []  # the same bar replayed cannot trade twice
    # Bar 3: high 43594.6, volume 5.03074129 -> 0.50307412 more.
    fills = paper.on_bar(bars[2])
    assert fills[0].amount == Decimal("0.50307412")
    order = paper.fetch_order_by_client_id(CLOID, "BTC/USDT")
    assert order is not None
    assert order.filled == Decimal("1.75440152")
    assert order.status == "open"
    # Bar 4: high 43500.5, volume 81.88 -> the rest (0.24559848) fills; order closed.
    fills = paper.on_bar(bars[3])
    assert fills[0].amount == Decimal("0.24559848")
    order = paper.fetch_order_by_client_id(CLOID, "BTC/USDT")
    assert order is not None and order.status == "closed" and order.filled == 2
    balance = paper.fetch_balance()
    assert balance["BTC"].total == 0
    assert balance["USDT"].total == 2 * 43500 - sum(f.fee for f in order.fills)
    assert sum(f.fee for f in order.fills) == Decimal("139.2")


def test_marketable_order_fills_at_the_bid_as_taker(
    tmp_path: Path, exchange_responses: Path
) -> None:
    bars = kraken_bars(exchange_responses)
    paper = make_paper(tmp_path)
    paper.on_bar(bars[1])  # close 43485.0, volume 12.51327406
    order = paper.create_limit_order("BTC/USDT", "sell", Decimal("0.3"), Decimal("43000"), CLOID)
    assert order.status == "closed"
    assert order.fills[0].price == Decimal("43485.0")  # the bid, better than the limit
    assert order.fee == Decimal("33.91830000")  # 0.26 % of 0.3 x 43485.0


def test_state_survives_a_restart_and_refuses_duplicates(
    tmp_path: Path, exchange_responses: Path
) -> None:
    bars = kraken_bars(exchange_responses)
    paper = make_paper(tmp_path)
    paper.on_bar(bars[0])
    paper.create_limit_order("BTC/USDT", "sell", Decimal("0.5"), Decimal("43500"), CLOID)
    reopened = PaperVenue(rules=paper.rules, state_path=tmp_path / "paper.json")
    assert reopened.fetch_balance()["BTC"].free == Decimal("1.5")
    with pytest.raises(VenueInvalidOrder, match="duplicate client order id"):
        reopened.create_limit_order("BTC/USDT", "sell", Decimal("0.5"), Decimal("43500"), CLOID)
    with pytest.raises(VenueInsufficientFunds, match=r"free 1\.5"):
        reopened.create_limit_order(
            "BTC/USDT", "sell", Decimal("1.6"), Decimal("43500"), "fc0000000000000002"
        )


def test_rules_checked_before_sending(tmp_path: Path) -> None:
    paper = make_paper(tmp_path)
    with pytest.raises(OrderRulesError, match="below the minimum amount"):
        paper.prepare_limit_order("BTC/USDT", "sell", Decimal("0.00005"), Decimal("43000"))
    amount, price = paper.prepare_limit_order(
        "BTC/USDT", "sell", Decimal("0.123456789"), Decimal("43000.01")
    )
    assert (amount, price) == (Decimal("0.12345678"), Decimal("43000.1"))
