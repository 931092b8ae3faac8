"""The venue interface every exchange adapter (ccxt, paper) implements, and the errors it raises.

Amounts and prices are `Decimal` end to end: floats only exist inside ccxt and are converted at
the boundary, so the ledger never stores a rounding artefact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Literal, Protocol, runtime_checkable

Side = Literal["buy", "sell"]
VenueStatus = Literal["open", "closed", "canceled", "rejected", "expired"]


class VenueError(Exception):
    """Base of every venue failure; the message names the venue and what failed."""


class VenueTimeout(VenueError):
    """The request may or may not have reached the venue: resolve by client order id, never resend."""


class VenueRateLimited(VenueError):
    """The venue refused the request for rate; the request was not executed."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VenueInsufficientFunds(VenueError):
    """The account lacks the balance for the order (operator alert)."""


class VenueInvalidOrder(VenueError):
    """The venue rejected the order's parameters (operator alert)."""


class OrderRulesError(VenueError):
    """The order breaks the market's precision, minimum amount or minimum cost (checked before sending)."""


@dataclass(frozen=True)
class MarketRules:
    """What the venue accepts on one market: steps, minimums and fees."""

    symbol: str
    amount_step: Decimal | None
    price_step: Decimal | None
    min_amount: Decimal | None
    min_cost: Decimal | None
    maker_fee: Decimal
    taker_fee: Decimal

    def round_amount(self, amount: Decimal) -> Decimal:
        """Amount truncated to the step: never sell more than asked."""
        if self.amount_step is None or self.amount_step <= 0:
            return amount
        return (amount / self.amount_step).to_integral_value(ROUND_DOWN) * self.amount_step

    def round_price(self, price: Decimal, side: Side) -> Decimal:
        """Price rounded to the tick on the side that never worsens a sale (up) or a buy (down)."""
        if self.price_step is None or self.price_step <= 0:
            return price
        rounding = ROUND_UP if side == "sell" else ROUND_DOWN
        return (price / self.price_step).to_integral_value(rounding) * self.price_step

    def check(self, amount: Decimal, price: Decimal) -> None:
        """Raise OrderRulesError when an already rounded order breaks a minimum."""
        if amount <= 0:
            raise OrderRulesError(f"{self.symbol}: amount {amount} rounds to nothing")
        if price <= 0:
            raise OrderRulesError(f"{self.symbol}: price {price} is not positive")
        if self.min_amount is not None and amount < self.min_amount:
            raise OrderRulesError(
                f"{self.symbol}: amount {amount} is below the minimum amount {self.min_amount}"
            )
        cost = amount * price
        if self.min_cost is not None and cost < self.min_cost:
            raise OrderRulesError(
                f"{self.symbol}: cost {cost} is below the minimum cost {self.min_cost}"
            )


@dataclass(frozen=True)
class Ticker:
    """Best bid/ask and last trade of one market."""

    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    timestamp: datetime | None


@dataclass(frozen=True)
class VenueFill:
    """One execution of an order; `trade_id` is unique per venue."""

    trade_id: str
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str | None
    timestamp: datetime | None


@dataclass(frozen=True)
class VenueOrder:
    """An order as the venue reports it."""

    venue: str
    order_id: str
    client_order_id: str | None
    symbol: str
    side: Side | None  # None when the venue's order-status reply omits it (Bitstamp)
    amount: Decimal
    price: Decimal | None
    filled: Decimal
    status: VenueStatus
    cost: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    fee_currency: str | None = None
    fills: tuple[VenueFill, ...] = field(default_factory=tuple)

    @property
    def remaining(self) -> Decimal:
        """Amount not yet filled."""
        return self.amount - self.filled


@dataclass(frozen=True)
class Balance:
    """One currency's balance on a venue."""

    currency: str
    free: Decimal
    total: Decimal


@runtime_checkable
class Venue(Protocol):
    """One exchange account. Every method raises a VenueError subclass on failure."""

    name: str

    def market_rules(self, symbol: str) -> MarketRules:
        """Precision, minimums and fees of `symbol`."""
        ...

    def prepare_limit_order(
        self, symbol: str, side: Side, amount: Decimal, price: Decimal
    ) -> tuple[Decimal, Decimal]:
        """Round to the market's precision and check its minimums (OrderRulesError) before sending."""
        ...

    def fetch_ticker(self, symbol: str) -> Ticker:
        """Current best bid/ask/last."""
        ...

    def fetch_balance(self) -> dict[str, Balance]:
        """Balances by currency code."""
        ...

    def fetch_open_orders(self, symbol: str) -> list[VenueOrder]:
        """Orders still resting on `symbol`."""
        ...

    def cancel_order(self, order: VenueOrder) -> None:
        """Cancel one resting order (no error when it is already final)."""
        ...

    def create_limit_order(
        self, symbol: str, side: Side, amount: Decimal, price: Decimal, client_order_id: str
    ) -> VenueOrder:
        """Place a limit order tagged with `client_order_id`."""
        ...

    def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """The order carrying `client_order_id`, or None when the venue never received it."""
        ...

    def key_can_withdraw(self) -> bool | None:
        """True/False when the venue reports the API key's withdrawal right, None when it cannot."""
        ...


def prepare_limit_order(
    rules: MarketRules, side: Side, amount: Decimal, price: Decimal
) -> tuple[Decimal, Decimal]:
    """Round to the market's steps and check its minimums before anything is sent."""
    rounded_amount = rules.round_amount(amount)
    rounded_price = rules.round_price(price, side)
    rules.check(rounded_amount, rounded_price)
    return rounded_amount, rounded_price


def to_decimal(value: object) -> Decimal | None:
    """Decimal from a venue number (float/str/int/None) without float artefacts."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))
