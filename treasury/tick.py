"""One treasury tick: recover, cancel, reconcile balances, decide (D1's strategy), check risk, place.

The decision is `treasury.strategy.decide`, the very function the backtester replays, fed with
the balances just read from the venues. Sell-only: a decision to buy is logged and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from treasury.executor import Executor
from treasury.ledger import DepositRecord, Ledger, OrderRecord
from treasury.risk import (
    KillSwitch,
    RiskLimits,
    RiskRefused,
    allowed_amount,
    check_order,
    day_window,
    reference_price,
)
from treasury.strategy import StrategyParams, TradeDecision, decide
from treasury.venues.base import OrderRulesError, Venue, VenueError
from treasury.venues.router import Spread, collect_quotes, cross_venue_spreads, route_sale

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickSettings:
    """What a tick needs besides the venues: market, strategy, limits."""

    symbol: str
    params: StrategyParams
    limits: RiskLimits
    reference_window: int = 24  # closes whose median is the reference price
    # Sell at the bid times (1 + offset): 0 crosses at once (taker), a small positive offset
    # rests just above the bid as a maker order.
    price_offset_fraction: Decimal = Decimal(0)


@dataclass
class TickResult:
    """What one tick saw and did."""

    coins: Decimal = Decimal(0)
    fiat: Decimal = Decimal(0)
    decision: TradeDecision | None = None
    reference_price: Decimal | None = None
    orders: list[OrderRecord] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unresolved: list[OrderRecord] = field(default_factory=list)
    spreads: list[Spread] = field(default_factory=list)
    failed_venues: list[str] = field(default_factory=list)
    skipped: str | None = None


def run_tick(
    ledger: Ledger,
    executor: Executor,
    venues: Sequence[Venue],
    closes: Sequence[float],
    settings: TickSettings,
    kill_switch: KillSwitch,
    deposits: Sequence[DepositRecord] = (),
    now: datetime | None = None,
) -> TickResult:
    """Run one tick; never raises for an exchange failure (it is logged and reported)."""
    at = now or datetime.now(UTC)
    result = TickResult()
    # 1. Every order from an earlier run must be settled before a new decision.
    result.unresolved = executor.recover()
    if result.unresolved:
        result.skipped = f"{len(result.unresolved)} order(s) still unresolved: " + ", ".join(
            o.client_order_id for o in result.unresolved
        )
        logger.warning("tick skipped reason=%s", result.skipped)
        return result
    if kill_switch.is_on():
        result.skipped = "kill switch is on"
        logger.warning("tick skipped reason=kill_switch")
        return result
    for venue in venues:
        try:
            executor.cancel_open_orders(venue.name, settings.symbol)
        except VenueError as exc:
            result.failed_venues.append(venue.name)
            logger.warning("cancel failed venue=%s error=%s", venue.name, exc)
    if result.failed_venues:
        result.skipped = "could not cancel open orders on " + ", ".join(result.failed_venues)
        return result
    # 2. Deposits join the ledger (they are already in the venue balances read next).
    for deposit in deposits:
        ledger.record_deposit(
            deposit.venue,
            deposit.reference,
            deposit.currency,
            deposit.amount,
            deposit.received_at,
            deposit.source,
        )
    # 3. Balances from the venues, as the venues see them.
    quotes, failed = collect_quotes(venues, settings.symbol)
    result.failed_venues = failed
    base, quote = settings.symbol.split("/")
    for venue in venues:
        if venue.name in failed:
            continue
        balances = venue.fetch_balance()
        ledger.snapshot_balances(venue.name, balances, now=at)
        result.coins += balances[base].total if base in balances else Decimal(0)
        result.fiat += balances[quote].total if quote in balances else Decimal(0)
    result.spreads = cross_venue_spreads(quotes)
    if not quotes:
        result.skipped = "no venue answered"
        return result
    # 4. The strategy (shared with the backtester) decides.
    decision = decide(closes, float(result.coins), float(result.fiat), settings.params)
    result.decision = decision
    if decision.coins_to_sell <= 0:
        result.skipped = f"no sale: {decision.reason}"
        return result
    # 5. Limits, routing and placement.
    recent = [Decimal(str(c)) for c in closes[-settings.reference_window :]]
    reference = reference_price(recent)
    result.reference_price = reference
    start, end = day_window(at)
    committed = ledger.committed_between(start, end, "sell")
    wanted = allowed_amount(Decimal(str(decision.coins_to_sell)), settings.limits, committed)
    if wanted <= 0:
        result.refused.append(
            f"daily maximum {settings.limits.max_sold_per_day} reached ({committed} today)"
        )
        return result
    by_name = {v.name: v for v in venues}
    for allocation in route_sale(wanted, quotes, settings.limits.max_exposure_per_venue):
        venue = by_name[allocation.venue]
        try:
            amount, price = venue.prepare_limit_order(
                settings.symbol,
                "sell",
                allocation.amount,
                allocation.price * (Decimal(1) + settings.price_offset_fraction),
            )
            check_order(
                "sell",
                amount,
                price,
                reference,
                settings.limits,
                committed,
                kill_switch.is_on(),
            )
        except (RiskRefused, OrderRulesError) as exc:
            result.refused.append(f"{venue.name}: {exc}")
            logger.warning("sale refused venue=%s reason=%s", venue.name, exc)
            continue
        record = executor.place(venue.name, settings.symbol, "sell", amount, price, reference)
        committed += amount
        result.orders.append(record)
    return result
