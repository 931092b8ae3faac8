"""Hard limits in front of every venue: order size, daily total, price band, kill switch, live mode.

Every check raises RiskRefused with a reason code and a message naming the limit and the
numbers, so an operator reading the alert knows which rule held the sale back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from statistics import median
from typing import Protocol

from treasury.venues.base import Side, Venue

logger = logging.getLogger(__name__)

KILL_SWITCH_FLAG = "kill_switch"


class RiskRefused(Exception):
    """A limit refused an order; `code` is machine-readable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RiskLimits:
    """The operator's limits, in coins (base currency) and as a fraction of the reference price."""

    max_order_amount: Decimal
    max_sold_per_day: Decimal
    price_band_fraction: Decimal
    max_exposure_per_venue: Decimal | None = None

    def __post_init__(self) -> None:
        if self.max_order_amount <= 0 or self.max_sold_per_day <= 0:
            raise ValueError("max_order_amount and max_sold_per_day must be positive")
        if not Decimal(0) < self.price_band_fraction < Decimal(1):
            raise ValueError(f"price_band_fraction {self.price_band_fraction} must be in (0, 1)")


class FlagStore(Protocol):
    """Where a DB-held flag lives (the Ledger implements it)."""

    def get_flag(self, name: str) -> str | None: ...

    def set_flag(self, name: str, value: str) -> None: ...


class KillSwitch:
    """On when the flag file exists or the database flag says `on`; either stops all selling."""

    def __init__(self, flags: FlagStore | None = None, path: Path | None = None) -> None:
        self.flags = flags
        self.path = path

    def is_on(self) -> bool:
        """True when any of the two switches is on."""
        if self.path is not None and self.path.exists():
            return True
        return self.flags is not None and self.flags.get_flag(KILL_SWITCH_FLAG) == "on"

    def set(self, on: bool) -> None:
        """Switch the database flag (and the file, when configured)."""
        if self.flags is not None:
            self.flags.set_flag(KILL_SWITCH_FLAG, "on" if on else "off")
        if self.path is not None:
            if on:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(f"kill switch set {datetime.now(UTC).isoformat()}\n")
            else:
                self.path.unlink(missing_ok=True)
        logger.warning("kill switch set on=%s", on)


def reference_price(recent_prices: Sequence[Decimal]) -> Decimal:
    """Median of recent prices: one crashed print cannot move it."""
    if not recent_prices:
        raise RiskRefused("no_reference", "no recent prices to build the reference price from")
    return Decimal(median(recent_prices))


def day_window(now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar day containing `now`, as [start, end)."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def allowed_amount(wanted: Decimal, limits: RiskLimits, committed_today: Decimal) -> Decimal:
    """The most of `wanted` the size and daily limits let through now (0 when none)."""
    left_today = max(limits.max_sold_per_day - committed_today, Decimal(0))
    return max(min(wanted, limits.max_order_amount, left_today), Decimal(0))


def check_order(
    side: Side,
    amount: Decimal,
    price: Decimal,
    reference: Decimal,
    limits: RiskLimits,
    committed_today: Decimal,
    kill_switch_on: bool,
) -> None:
    """Raise RiskRefused unless the order passes every limit."""
    if kill_switch_on:
        raise RiskRefused("kill_switch", "kill switch is on: no order may be sent")
    if amount > limits.max_order_amount:
        raise RiskRefused(
            "max_order",
            f"order of {amount} exceeds the maximum order size {limits.max_order_amount}",
        )
    if committed_today + amount > limits.max_sold_per_day:
        raise RiskRefused(
            "max_per_day",
            f"{side} of {amount} on top of {committed_today} today exceeds the daily maximum "
            f"{limits.max_sold_per_day}",
        )
    if reference <= 0:
        raise RiskRefused("no_reference", f"reference price {reference} is not positive")
    deviation = (price - reference) / reference
    # A sale far below the reference is a flash crash; a buy far above it a spike.
    if side == "sell" and deviation < -limits.price_band_fraction:
        raise RiskRefused(
            "price_band",
            f"sell price {price} is {-deviation:.2%} below the reference {reference} "
            f"(band {limits.price_band_fraction:.2%}): refusing to sell into a crash",
        )
    if side == "buy" and deviation > limits.price_band_fraction:
        raise RiskRefused(
            "price_band",
            f"buy price {price} is {deviation:.2%} above the reference {reference} "
            f"(band {limits.price_band_fraction:.2%})",
        )


class LiveModeRefused(Exception):
    """Live selling was asked for without the switches, or with a key that can withdraw."""


def check_live_mode(live: bool, dry_run: bool, venues: Sequence[Venue]) -> list[str]:
    """Allow live selling only with both switches and keys without withdrawal rights.

    Returns the names of venues whose exchange cannot report key permissions (the operator
    must check those keys by hand); raises LiveModeRefused otherwise.
    """
    if not live or dry_run:
        raise LiveModeRefused(
            f"live selling needs live=true and dry_run=false (got live={live}, dry_run={dry_run})"
        )
    unverifiable: list[str] = []
    for venue in venues:
        can_withdraw = venue.key_can_withdraw()
        if can_withdraw is True:
            raise LiveModeRefused(
                f"venue {venue.name}: the API key has withdrawal rights; create a trade-only key"
            )
        if can_withdraw is None:
            logger.warning("venue=%s cannot report API key permissions: check by hand", venue.name)
            unverifiable.append(venue.name)
    return unverifiable
