"""Several venues at once: route a sale by best net price after fees, cap exposure per venue,
report cross-venue spreads.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from treasury.venues.base import Venue, VenueError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VenueQuote:
    """What one venue offers a seller now."""

    venue: str
    bid: Decimal
    ask: Decimal | None
    taker_fee: Decimal
    coins_free: Decimal
    fiat_total: Decimal
    coins_total: Decimal

    @property
    def net_sell_price(self) -> Decimal:
        """Proceeds per coin sold at the bid after the taker fee."""
        return self.bid * (Decimal(1) - self.taker_fee)

    def exposure(self, price: Decimal) -> Decimal:
        """Everything held at the venue, in coins at `price` (counterparty risk)."""
        return self.coins_total + (self.fiat_total / price if price > 0 else Decimal(0))


@dataclass(frozen=True)
class Allocation:
    """Part of a sale routed to one venue at its bid."""

    venue: str
    amount: Decimal
    price: Decimal
    net_price: Decimal


@dataclass(frozen=True)
class Spread:
    """Cross-venue spread: best bid against every other venue's bid."""

    best_venue: str
    other_venue: str
    best_bid: Decimal
    other_bid: Decimal
    difference: Decimal
    basis_points: Decimal


def collect_quotes(venues: Sequence[Venue], symbol: str) -> tuple[list[VenueQuote], list[str]]:
    """Quote every venue; a venue that fails is left out and named in the second list."""
    base, quote = symbol.split("/")
    quotes: list[VenueQuote] = []
    failed: list[str] = []
    for venue in venues:
        try:
            ticker = venue.fetch_ticker(symbol)
            rules = venue.market_rules(symbol)
            balances = venue.fetch_balance()
        except VenueError as exc:
            logger.warning("venue quote failed venue=%s error=%s", venue.name, exc)
            failed.append(venue.name)
            continue
        if ticker.bid is None:
            logger.warning("venue has no bid venue=%s", venue.name)
            failed.append(venue.name)
            continue
        coins = balances.get(base)
        fiat = balances.get(quote)
        quotes.append(
            VenueQuote(
                venue=venue.name,
                bid=ticker.bid,
                ask=ticker.ask,
                taker_fee=rules.taker_fee,
                coins_free=coins.free if coins else Decimal(0),
                coins_total=coins.total if coins else Decimal(0),
                fiat_total=fiat.total if fiat else Decimal(0),
            )
        )
    return quotes, failed


def route_sale(
    amount: Decimal, quotes: Sequence[VenueQuote], max_exposure: Decimal | None = None
) -> list[Allocation]:
    """Split a sale over venues, best net price first, each limited to the coins it holds.

    A venue whose total holdings exceed `max_exposure` (in coins at its bid) is skipped with
    a warning: the operator should withdraw from it before more proceeds pile up there.
    """
    allocations: list[Allocation] = []
    left = amount
    for quote in sorted(quotes, key=lambda q: q.net_sell_price, reverse=True):
        if left <= 0:
            break
        if max_exposure is not None and quote.exposure(quote.bid) > max_exposure:
            logger.warning(
                "venue over exposure cap venue=%s exposure=%s cap=%s",
                quote.venue,
                quote.exposure(quote.bid),
                max_exposure,
            )
            continue
        take = min(left, quote.coins_free)
        if take <= 0:
            continue
        allocations.append(Allocation(quote.venue, take, quote.bid, quote.net_sell_price))
        left -= take
    return allocations


def cross_venue_spreads(quotes: Sequence[VenueQuote]) -> list[Spread]:
    """Best bid venue against each other venue, in price and basis points."""
    if len(quotes) < 2:
        return []
    best = max(quotes, key=lambda q: q.bid)
    return [
        Spread(
            best_venue=best.venue,
            other_venue=q.venue,
            best_bid=best.bid,
            other_bid=q.bid,
            difference=best.bid - q.bid,
            basis_points=(best.bid - q.bid) / best.bid * Decimal(10_000),
        )
        for q in sorted(quotes, key=lambda q: q.bid, reverse=True)
        if q is not best
    ]
