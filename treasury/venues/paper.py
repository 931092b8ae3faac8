"""The paper venue (the default): limit orders fill honestly against recorded or live prices.

Honest means: a resting sell fills only when a trade or bar reaches its limit price, at the limit
price (maker fee), and never for more than `volume_share` of the volume traded there; an order
that crosses the book when placed fills at the bid/ask (taker fee), capped the same way by the
last bar's volume. The state (balances, orders, fills) can live in a JSON file replaced
atomically on every change, so a killed process finds the venue exactly as the venue saw it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from treasury.venues.base import (
    Balance,
    MarketRules,
    Side,
    Ticker,
    VenueError,
    VenueFill,
    VenueInsufficientFunds,
    VenueInvalidOrder,
    VenueOrder,
    VenueStatus,
    prepare_limit_order,
)

logger = logging.getLogger(__name__)

FEE_QUANTUM = Decimal("0.00000001")

DEFAULT_RULES = MarketRules(
    symbol="BTC/USD",
    amount_step=Decimal("0.00000001"),
    price_step=Decimal("0.1"),
    min_amount=Decimal("0.0001"),
    min_cost=Decimal("0.5"),
    maker_fee=Decimal("0.0016"),
    taker_fee=Decimal("0.0026"),
)


@dataclass(frozen=True)
class PriceBar:
    """One recorded interval of trading: OHLC and the base volume traded."""

    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class PaperVenue:
    """A simulated exchange account for one market; see the module docstring for fill rules."""

    def __init__(
        self,
        name: str = "paper",
        rules: MarketRules = DEFAULT_RULES,
        state_path: Path | None = None,
        initial_balances: dict[str, Decimal] | None = None,
        volume_share: Decimal = Decimal("0.1"),
        half_spread: Decimal = Decimal(0),
    ) -> None:
        if not Decimal(0) < volume_share <= Decimal(1):
            raise ValueError(f"volume_share must be in (0, 1], got {volume_share}")
        self.name = name
        self.rules = rules
        self.state_path = state_path
        self.volume_share = volume_share
        self.half_spread = half_spread
        self._lock = threading.Lock()
        self._state: dict[str, Any]
        if state_path is not None and state_path.exists():
            self._state = json.loads(state_path.read_text())
        else:
            self._state = {
                "balances": {k: str(v) for k, v in (initial_balances or {}).items()},
                "orders": {},
                "next_order": 1,
                "next_trade": 1,
                "bid": None,
                "ask": None,
                "last": None,
                "last_volume": None,
                "timestamp": None,
            }
            self._save()

    # -- persistence -----------------------------------------------------------------------
    def _save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a kill at any instant leaves either the old or the new state.
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".paper-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(self._state, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_path)

    # -- market data -----------------------------------------------------------------------
    def market_rules(self, symbol: str) -> MarketRules:
        """The configured rules (the paper venue trades one market)."""
        self._check_symbol(symbol)
        return self.rules

    def prepare_limit_order(
        self, symbol: str, side: Side, amount: Decimal, price: Decimal
    ) -> tuple[Decimal, Decimal]:
        """Round to the configured steps and check the minimums."""
        return prepare_limit_order(self.market_rules(symbol), side, amount, price)

    def fetch_ticker(self, symbol: str) -> Ticker:
        """Last recorded or live quote; fails when no price was fed yet."""
        self._check_symbol(symbol)
        s = self._state
        if s["last"] is None:
            raise VenueError(f"{self.name}: no price fed yet for {symbol}")
        ts = datetime.fromisoformat(s["timestamp"]) if s["timestamp"] else None
        return Ticker(symbol, _d(s["bid"]), _d(s["ask"]), _d(s["last"]), ts)

    def set_quote(self, bid: Decimal, ask: Decimal, last: Decimal, timestamp: datetime) -> None:
        """Follow a live ticker (e.g. a real venue's) without any traded volume."""
        with self._lock:
            self._state.update(
                bid=str(bid), ask=str(ask), last=str(last), timestamp=timestamp.isoformat()
            )
            self._save()

    def on_bar(self, bar: PriceBar) -> list[VenueFill]:
        """Advance by one recorded bar: fill resting orders its range reached, by its volume.

        A bar not newer than the last one fed is ignored, so replaying it cannot trade twice.
        """
        with self._lock:
            fills: list[VenueFill] = []
            last = self._state["timestamp"]
            if last is not None and bar.timestamp <= datetime.fromisoformat(last):
                logger.info(
                    "paper bar ignored venue=%s ts=%s (not newer)", self.name, bar.timestamp
                )
                return fills
            budget = bar.volume * self.volume_share
            # Best-priced orders first, as the book would fill them.
            for order in self._resting(sort_for_fill=True):
                if budget <= 0:
                    break
                price = Decimal(order["price"])
                crossed = bar.high >= price if order["side"] == "sell" else bar.low <= price
                if not crossed:
                    continue
                amount = self.rules.round_amount(
                    min(Decimal(order["amount"]) - Decimal(order["filled"]), budget)
                )
                if amount <= 0:
                    break
                budget -= amount
                fills.append(self._fill(order, amount, price, "maker", bar.timestamp))
            self._state.update(
                bid=str(bar.close - self.half_spread),
                ask=str(bar.close + self.half_spread),
                last=str(bar.close),
                last_volume=str(bar.volume),
                timestamp=bar.timestamp.isoformat(),
            )
            self._save()
            return fills

    def on_trade(self, price: Decimal, amount: Decimal, timestamp: datetime) -> list[VenueFill]:
        """Advance by one public trade: fills orders at or through `price`, by its size."""
        bar = PriceBar(timestamp, price, price, price, price, amount)
        return self.on_bar(bar)

    # -- account ---------------------------------------------------------------------------
    def fetch_balance(self) -> dict[str, Balance]:
        """Balances; free excludes what resting orders reserve."""
        reserved: dict[str, Decimal] = {}
        base, quote = self.rules.symbol.split("/")
        for order in self._resting():
            remaining = Decimal(order["amount"]) - Decimal(order["filled"])
            if order["side"] == "sell":
                reserved[base] = reserved.get(base, Decimal(0)) + remaining
            else:
                cost = remaining * Decimal(order["price"])
                reserved[quote] = reserved.get(quote, Decimal(0)) + cost
        return {
            cur: Balance(cur, Decimal(total) - reserved.get(cur, Decimal(0)), Decimal(total))
            for cur, total in self._state["balances"].items()
        }

    def deposit(self, currency: str, amount: Decimal) -> None:
        """Credit mined coins (a paper deposit)."""
        with self._lock:
            self._add(currency, amount)
            self._save()

    def fetch_open_orders(self, symbol: str) -> list[VenueOrder]:
        """Resting orders on the market."""
        self._check_symbol(symbol)
        return [self._to_order(o) for o in self._resting()]

    def all_orders(self) -> list[VenueOrder]:
        """Every order the venue ever accepted (for reconciliation checks)."""
        return [self._to_order(o) for o in self._state["orders"].values()]

    def cancel_order(self, order: VenueOrder) -> None:
        """Cancel a resting order; final orders are left as they are."""
        with self._lock:
            stored = self._state["orders"].get(order.client_order_id or "")
            if stored is None:
                stored = next(
                    (o for o in self._state["orders"].values() if o["id"] == order.order_id), None
                )
            if stored is None:
                raise VenueInvalidOrder(f"{self.name}: unknown order {order.order_id}")
            if stored["status"] == "open":
                stored["status"] = "canceled"
                self._save()

    def create_limit_order(
        self, symbol: str, side: Side, amount: Decimal, price: Decimal, client_order_id: str
    ) -> VenueOrder:
        """Accept a limit order; a duplicate client order id is refused as real venues do."""
        self._check_symbol(symbol)
        with self._lock:
            if client_order_id in self._state["orders"]:
                raise VenueInvalidOrder(f"{self.name}: duplicate client order id {client_order_id}")
            base, quote = symbol.split("/")
            free = self.fetch_balance()
            need_cur, need = (base, amount) if side == "sell" else (quote, amount * price)
            have = free[need_cur].free if need_cur in free else Decimal(0)
            if have < need:
                raise VenueInsufficientFunds(
                    f"{self.name}: {side} {amount} {base} needs {need} {need_cur}, free {have}"
                )
            order = {
                "id": f"P{self._state['next_order']:08d}",
                "client_order_id": client_order_id,
                "symbol": symbol,
                "side": side,
                "amount": str(amount),
                "price": str(price),
                "filled": "0",
                "cost": "0",
                "fee": "0",
                "status": "open",
                "fills": [],
            }
            self._state["next_order"] += 1
            self._state["orders"][client_order_id] = order
            self._fill_on_placement(order)
            self._save()
            return self._to_order(order)

    def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """The order with that client id, or None when it never arrived."""
        self._check_symbol(symbol)
        stored = self._state["orders"].get(client_order_id)
        return None if stored is None else self._to_order(stored)

    def key_can_withdraw(self) -> bool | None:
        """The paper venue has no API key, so nothing can be withdrawn."""
        return False

    # -- internals -------------------------------------------------------------------------
    def _check_symbol(self, symbol: str) -> None:
        if symbol != self.rules.symbol:
            raise VenueInvalidOrder(f"{self.name}: trades {self.rules.symbol} only, not {symbol}")

    def _resting(self, sort_for_fill: bool = False) -> list[dict[str, Any]]:
        orders = [o for o in self._state["orders"].values() if o["status"] == "open"]
        if sort_for_fill:
            # Lowest asks and highest bids trade first; ties by arrival.
            orders.sort(
                key=lambda o: (
                    Decimal(o["price"]) if o["side"] == "sell" else -Decimal(o["price"]),
                    o["id"],
                )
            )
        return orders

    def _fill_on_placement(self, order: dict[str, Any]) -> None:
        s = self._state
        price = Decimal(order["price"])
        if order["side"] == "sell":
            touch = _d(s["bid"])
            crosses = touch is not None and touch >= price
        else:
            touch = _d(s["ask"])
            crosses = touch is not None and touch <= price
        if not crosses or touch is None:
            return
        # Without an order book the last bar's volume bounds what the touch could absorb.
        cap = Decimal(s["last_volume"]) * self.volume_share if s["last_volume"] else None
        amount = Decimal(order["amount"]) if cap is None else min(Decimal(order["amount"]), cap)
        amount = self.rules.round_amount(amount)
        if amount > 0:
            ts = datetime.fromisoformat(s["timestamp"]) if s["timestamp"] else datetime.now(UTC)
            self._fill(order, amount, touch, "taker", ts)

    def _fill(
        self, order: dict[str, Any], amount: Decimal, price: Decimal, role: str, ts: datetime
    ) -> VenueFill:
        base, quote = order["symbol"].split("/")
        rate = self.rules.maker_fee if role == "maker" else self.rules.taker_fee
        notional = amount * price
        # Venues report fees rounded to the quote currency's precision.
        fee = (notional * rate).quantize(FEE_QUANTUM, ROUND_HALF_UP)
        trade_id = f"T{self._state['next_trade']:08d}"
        self._state["next_trade"] += 1
        if order["side"] == "sell":
            self._add(base, -amount)
            self._add(quote, notional - fee)
        else:
            self._add(base, amount)
            self._add(quote, -notional - fee)
        order["filled"] = str(Decimal(order["filled"]) + amount)
        order["cost"] = str(Decimal(order["cost"]) + notional)
        order["fee"] = str(Decimal(order["fee"]) + fee)
        if Decimal(order["filled"]) >= Decimal(order["amount"]):
            order["status"] = "closed"
        fill = {
            "trade_id": trade_id,
            "amount": str(amount),
            "price": str(price),
            "fee": str(fee),
            "fee_currency": quote,
            "timestamp": ts.isoformat(),
        }
        order["fills"].append(fill)
        logger.info(
            "paper fill venue=%s order=%s amount=%s price=%s role=%s",
            self.name,
            order["client_order_id"],
            amount,
            price,
            role,
        )
        return _to_fill(fill)

    def _add(self, currency: str, delta: Decimal) -> None:
        balances = self._state["balances"]
        balances[currency] = str(Decimal(balances.get(currency, "0")) + delta)

    def _to_order(self, o: dict[str, Any]) -> VenueOrder:
        status: VenueStatus = o["status"]
        return VenueOrder(
            venue=self.name,
            order_id=o["id"],
            client_order_id=o["client_order_id"],
            symbol=o["symbol"],
            side=o["side"],
            amount=Decimal(o["amount"]),
            price=Decimal(o["price"]),
            filled=Decimal(o["filled"]),
            status=status,
            cost=Decimal(o["cost"]),
            fee=Decimal(o["fee"]),
            fee_currency=o["symbol"].split("/")[1],
            fills=tuple(_to_fill(f) for f in o["fills"]),
        )


def _d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _to_fill(f: dict[str, Any]) -> VenueFill:
    return VenueFill(
        trade_id=f["trade_id"],
        amount=Decimal(f["amount"]),
        price=Decimal(f["price"]),
        fee=Decimal(f["fee"]),
        fee_currency=f["fee_currency"],
        timestamp=datetime.fromisoformat(f["timestamp"]),
    )
