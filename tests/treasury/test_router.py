"""Router: best net price after fees, coins per venue, exposure cap, cross-venue spreads."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from treasury.venues.paper import DEFAULT_RULES, PaperVenue, PriceBar
from treasury.venues.router import collect_quotes, cross_venue_spreads, route_sale

T = datetime(2024, 3, 13, 11, 10, tzinfo=UTC)


def venue(name: str, bid: str, taker: str, btc: str, usd: str = "0") -> PaperVenue:
    rules = replace(DEFAULT_RULES, symbol="BTC/USDT", taker_fee=Decimal(taker))
    v = PaperVenue(
        name=name, rules=rules, initial_balances={"BTC": Decimal(btc), "USDT": Decimal(usd)}
    )
    v.set_quote(Decimal(bid), Decimal(bid) + 10, Decimal(bid), T)
    return v


# Bids of the recorded tickers of 13 March 2024; taker fees of each venue's entry tier.
def venues() -> list[PaperVenue]:
    return [
        venue("kraken", "73380.6", "0.0040", "0.3"),
        venue("bitstamp", "73353", "0.0040", "1.0"),
        venue("bitfinex", "73341", "0.0020", "1.0"),
    ]


def test_best_net_price_after_fees_wins() -> None:
    quotes, failed = collect_quotes(venues(), "BTC/USDT")
    assert failed == []
    nets = {q.venue: q.net_sell_price for q in quotes}
    # Bitfinex has the lowest bid but the lowest fee: 73341 x 0.998 = 73194.318.
    assert nets["bitfinex"] == Decimal("73194.318")
    assert nets["kraken"] == Decimal("73087.0776")
    allocations = route_sale(Decimal("1.5"), quotes)
    assert [(a.venue, a.amount) for a in allocations] == [
        ("bitfinex", Decimal("1.0")),
        ("kraken", Decimal("0.3")),
        ("bitstamp", Decimal("0.2")),
    ]


def test_exposure_cap_skips_a_venue_holding_too_much() -> None:
    vs = venues()
    vs[2] = venue("bitfinex", "73341", "0.0020", "1.0", usd="146682")  # + 2 BTC worth of USDT
    quotes, _ = collect_quotes(vs, "BTC/USDT")
    allocations = route_sale(Decimal("0.5"), quotes, max_exposure=Decimal("2.5"))
    assert [a.venue for a in allocations] == ["kraken", "bitstamp"]


def test_cross_venue_spreads() -> None:
    quotes, _ = collect_quotes(venues(), "BTC/USDT")
    spreads = cross_venue_spreads(quotes)
    assert [(s.best_venue, s.other_venue, s.difference) for s in spreads] == [
        ("kraken", "bitstamp", Decimal("27.6")),
        ("kraken", "bitfinex", Decimal("39.6")),
    ]
    assert round(spreads[1].basis_points, 2) == Decimal("5.40")


def test_a_silent_venue_is_named_not_fatal() -> None:
    mute = PaperVenue(name="mute", rules=replace(DEFAULT_RULES, symbol="BTC/USDT"))
    quotes, failed = collect_quotes([*venues(), mute], "BTC/USDT")
    assert failed == ["mute"] and len(quotes) == 3
    mute.on_bar(PriceBar(T, Decimal(1), Decimal(1), Decimal(1), Decimal(1), Decimal(1)))
