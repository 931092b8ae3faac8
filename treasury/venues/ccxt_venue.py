"""Any ccxt exchange as a Venue: Decimal at the boundary, errors mapped, client order ids per venue.

Client order ids: farmctl ids are 18 characters, `fc` + 16 hex digits (Kraken's `cl_ord_id`
accepts up to 18 alphanumerics; Bitstamp's `client_order_id` any string). Bitfinex wants an
integer `cid` (int45), so its cid is derived from the id deterministically (the hex value mod
2**45) and mapped back when the order is looked up.

Error mapping (ccxt's hierarchy -> ours): RateLimitExceeded/DDoSProtection -> VenueRateLimited
(request not executed; back off); RequestTimeout/NetworkError -> VenueTimeout (outcome unknown;
resolve by client order id); InsufficientFunds -> VenueInsufficientFunds; InvalidOrder ->
VenueInvalidOrder; anything else -> VenueError.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import ccxt

from treasury.venues.base import (
    Balance,
    MarketRules,
    OrderRulesError,
    Side,
    Ticker,
    VenueError,
    VenueFill,
    VenueInsufficientFunds,
    VenueInvalidOrder,
    VenueOrder,
    VenueRateLimited,
    VenueStatus,
    VenueTimeout,
    to_decimal,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLIENT_ORDER_ID_PATTERN = re.compile(r"^fc[0-9a-f]{16}$")
BITFINEX_CID_MODULUS = 2**45


def bitfinex_cid(client_order_id: str) -> int:
    """Bitfinex's integer `cid` for a farmctl client order id."""
    if not CLIENT_ORDER_ID_PATTERN.match(client_order_id):
        raise VenueInvalidOrder(f"client order id {client_order_id!r} is not fc + 16 hex digits")
    return int(client_order_id[2:], 16) % BITFINEX_CID_MODULUS


def point_at(exchange: ccxt.Exchange, base_url: str) -> None:
    """Send every API call of `exchange` to `base_url` (scheme://host:port), keeping the paths."""
    base = base_url.rstrip("/")

    def rewrite(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"^https?://[^/]+", base, value)
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        return value

    exchange.urls["api"] = rewrite(exchange.urls["api"])


class CcxtVenue:
    """One account on one ccxt exchange (sync API)."""

    def __init__(
        self,
        exchange: ccxt.Exchange,
        name: str | None = None,
        maker_fee: Decimal | None = None,
        taker_fee: Decimal | None = None,
    ) -> None:
        self.exchange = exchange
        self.name = name or str(exchange.id)
        self._maker_fee = maker_fee
        self._taker_fee = taker_fee

    @classmethod
    def create(
        cls,
        exchange_id: str,
        api_key: str | None = None,
        secret: str | None = None,
        name: str | None = None,
        api_url: str | None = None,
        timeout_ms: int = 10_000,
    ) -> CcxtVenue:
        """Build the ccxt class `exchange_id`; `api_url` redirects it (tests, proxies)."""
        klass = getattr(ccxt, exchange_id, None)
        if klass is None or not isinstance(klass, type):
            raise VenueError(f"ccxt has no exchange called {exchange_id!r}")
        config: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms}
        if api_key is not None:
            config["apiKey"] = api_key
        if secret is not None:
            config["secret"] = secret
        exchange = klass(config)
        if api_url is not None:
            point_at(exchange, api_url)
        return cls(exchange, name=name)

    # -- calls -----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
            raise VenueRateLimited(f"{self.name}: {what} rate-limited: {exc}") from exc
        except (ccxt.RequestTimeout, ccxt.NetworkError) as exc:
            raise VenueTimeout(f"{self.name}: {what} got no answer: {exc}") from exc
        except ccxt.InsufficientFunds as exc:
            raise VenueInsufficientFunds(f"{self.name}: {what}: insufficient funds: {exc}") from exc
        except ccxt.InvalidOrder as exc:
            raise VenueInvalidOrder(f"{self.name}: {what}: order refused: {exc}") from exc
        except ccxt.BaseError as exc:
            raise VenueError(f"{self.name}: {what} failed: {type(exc).__name__}: {exc}") from exc
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise VenueError(f"{self.name}: {what}: malformed reply: {exc!r}") from exc

    def _market(self, symbol: str) -> dict[str, Any]:
        if not self.exchange.markets:
            self._call("load markets", self.exchange.load_markets)
        try:
            market: dict[str, Any] = self.exchange.market(symbol)
        except ccxt.BaseError as exc:
            raise VenueError(f"{self.name}: unknown market {symbol}: {exc}") from exc
        return market

    # -- market data -----------------------------------------------------------------------
    def market_rules(self, symbol: str) -> MarketRules:
        """Steps, minimums and fees from ccxt's market structure (fees overridable)."""
        market = self._market(symbol)
        limits = market.get("limits") or {}
        precision = market.get("precision") or {}
        tick = self.exchange.precisionMode == ccxt.TICK_SIZE
        return MarketRules(
            symbol=symbol,
            amount_step=to_decimal(precision.get("amount")) if tick else None,
            price_step=to_decimal(precision.get("price")) if tick else None,
            min_amount=to_decimal((limits.get("amount") or {}).get("min")),
            min_cost=to_decimal((limits.get("cost") or {}).get("min")),
            maker_fee=self._maker_fee or to_decimal(market.get("maker")) or Decimal(0),
            taker_fee=self._taker_fee or to_decimal(market.get("taker")) or Decimal(0),
        )

    def prepare_limit_order(
        self, symbol: str, side: Side, amount: Decimal, price: Decimal
    ) -> tuple[Decimal, Decimal]:
        """Round with the market's precision (ccxt's rules for any mode), then check minimums.

        On tick-size markets the price rounds up for a sale and down for a buy; on markets with
        significant-digit prices (Bitfinex) ccxt's nearest rounding applies.
        """
        rules = self.market_rules(symbol)
        try:
            rounded_amount = Decimal(self.exchange.amount_to_precision(symbol, str(amount)))
            rounded_price = Decimal(self.exchange.price_to_precision(symbol, str(price)))
            if rules.price_step is not None:
                # Tick-size markets: round on the side that never cheapens a sale.
                rounded_price = rules.round_price(price, side)
        except ccxt.InvalidOrder as exc:
            # ccxt raises when the amount truncates below the precision.
            raise OrderRulesError(f"{self.name}: {symbol} amount {amount}: {exc}") from exc
        rules.check(rounded_amount, rounded_price)
        return rounded_amount, rounded_price

    def fetch_ticker(self, symbol: str) -> Ticker:
        """Best bid/ask/last of `symbol`."""
        raw = self._call(f"fetch ticker {symbol}", lambda: self.exchange.fetch_ticker(symbol))
        return Ticker(
            symbol=symbol,
            bid=to_decimal(raw.get("bid")),
            ask=to_decimal(raw.get("ask")),
            last=to_decimal(raw.get("last")),
            timestamp=_ts(raw.get("timestamp")),
        )

    # -- account ---------------------------------------------------------------------------
    def fetch_balance(self) -> dict[str, Balance]:
        """Balances of every currency the venue reports."""
        raw = self._call("fetch balance", self.exchange.fetch_balance)
        totals = raw.get("total") or {}
        frees = raw.get("free") or {}
        result: dict[str, Balance] = {}
        for currency, total in totals.items():
            total_d = to_decimal(total)
            if total_d is None:
                continue
            free_d = to_decimal(frees.get(currency))
            result[currency] = Balance(currency, free_d if free_d is not None else total_d, total_d)
        return result

    def fetch_open_orders(self, symbol: str) -> list[VenueOrder]:
        """Resting orders on `symbol`."""
        raws = self._call(
            f"fetch open orders {symbol}", lambda: self.exchange.fetch_open_orders(symbol)
        )
        return [self._order(raw) for raw in raws]

    def cancel_order(self, order: VenueOrder) -> None:
        """Cancel one order; an order already gone is not an error."""
        try:
            self._call(
                f"cancel {order.order_id}",
                lambda: self.exchange.cancel_order(order.order_id, order.symbol),
            )
        except VenueInvalidOrder as exc:
            if "not found" in str(exc).lower() or "unknown order" in str(exc).lower():
                logger.info("cancel of a gone order venue=%s id=%s", self.name, order.order_id)
                return
            raise

    def create_limit_order(
        self, symbol: str, side: Side, amount: Decimal, price: Decimal, client_order_id: str
    ) -> VenueOrder:
        """Send a limit order carrying the client order id in the venue's own parameter."""
        params = self._client_id_params(client_order_id)
        raw = self._call(
            f"create {side} {amount} {symbol} @ {price} cloid={client_order_id}",
            lambda: self.exchange.create_order(
                symbol, "limit", side, float(amount), float(price), params
            ),
        )
        order = self._order(
            raw, client_order_id=client_order_id, symbol=symbol, side=side, amount=amount
        )
        logger.info(
            "order sent venue=%s cloid=%s id=%s", self.name, client_order_id, order.order_id
        )
        return order

    def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """Find our order by client order id (open first, then closed); None when absent."""
        exchange_id = self.exchange.id
        if exchange_id == "bitstamp":
            try:
                raw = self._call(
                    f"order status cloid={client_order_id}",
                    lambda: self.exchange.fetch_order(
                        None, symbol, {"client_order_id": client_order_id}
                    ),
                )
            except VenueInvalidOrder as exc:
                if "not found" in str(exc).lower():
                    return None
                raise
            return self._order(raw, client_order_id=client_order_id, symbol=symbol)
        wanted = str(bitfinex_cid(client_order_id)) if exchange_id == "bitfinex" else None
        params = {"clientOrderId": client_order_id} if exchange_id == "kraken" else {}
        for what, fetch in (
            ("open", self.exchange.fetch_open_orders),
            ("closed", self.exchange.fetch_closed_orders),
        ):
            raws = self._call(
                f"fetch {what} orders cloid={client_order_id}",
                lambda fetch=fetch: fetch(symbol, None, None, params),  # type: ignore[misc]
            )
            for raw in raws:
                found = str(raw.get("clientOrderId"))
                if found in (client_order_id, wanted):
                    return self._order(raw, client_order_id=client_order_id, symbol=symbol)
        return None

    def key_can_withdraw(self) -> bool | None:
        """Whether the API key may withdraw, where the exchange reports it; None elsewhere.

        Kraken: POST /0/private/GetApiKeyInfo lists the key's permissions; Bitfinex:
        /v2/auth/r/permissions gives [scope, read, write] rows. Other ccxt exchanges (Bitstamp
        included) expose no such call, so None: the operator must check the key by hand.
        """
        exchange_id = self.exchange.id
        if exchange_id == "kraken":
            raw = self._call(
                "get API key info",
                lambda: self.exchange.privatePostGetApiKeyInfo(),
            )
            permissions = (raw.get("result") or {}).get("permissions")
            if permissions is None:
                raise VenueError(f"{self.name}: GetApiKeyInfo reply has no permissions: {raw!r}")
            return any("withdraw" in name.lower() for name in _granted(permissions))
        if exchange_id == "bitfinex":
            rows = self._call(
                "get API key permissions",
                lambda: self.exchange.privatePostAuthRPermissions(),
            )
            for row in rows:
                if str(row[0]) in ("withdraw", "ui_withdraw") and int(row[2]) == 1:
                    return True
            return False
        return None

    # -- internals -------------------------------------------------------------------------
    def _client_id_params(self, client_order_id: str) -> dict[str, Any]:
        if not CLIENT_ORDER_ID_PATTERN.match(client_order_id):
            raise VenueInvalidOrder(
                f"client order id {client_order_id!r} is not fc + 16 hex digits"
            )
        if self.exchange.id == "bitfinex":
            return {"cid": bitfinex_cid(client_order_id)}
        if self.exchange.id == "bitstamp":
            return {"client_order_id": client_order_id}
        # Kraken maps clientOrderId to cl_ord_id; most ccxt exchanges accept clientOrderId.
        return {"clientOrderId": client_order_id}

    def _order(
        self,
        raw: dict[str, Any],
        client_order_id: str | None = None,
        symbol: str | None = None,
        side: Side | None = None,
        amount: Decimal | None = None,
    ) -> VenueOrder:
        filled = to_decimal(raw.get("filled")) or Decimal(0)
        parsed = [_fill(t) for t in raw.get("trades") or [] if isinstance(t, dict)]
        fills = tuple(f for f in parsed if f is not None)
        if not filled and fills:
            filled = sum((f.amount for f in fills), Decimal(0))
        order_amount = to_decimal(raw.get("amount"))
        if order_amount is None:
            remaining = to_decimal(raw.get("remaining"))
            info = raw.get("info") or {}
            if remaining is None and isinstance(info, dict):
                remaining = to_decimal(info.get("amount_remaining"))
            order_amount = filled + remaining if remaining is not None else amount
        if order_amount is None:
            raise VenueError(f"{self.name}: order {raw.get('id')} reply has no amount: {raw!r}")
        status = _status(raw.get("status"), filled, order_amount)
        cost = to_decimal(raw.get("cost")) or sum((f.amount * f.price for f in fills), Decimal(0))
        fee_info = raw.get("fee") or {}
        fee = to_decimal(fee_info.get("cost")) if isinstance(fee_info, dict) else None
        if fee is None:
            fee = sum((f.fee for f in fills), Decimal(0))
        raw_side = raw.get("side") or side
        if raw_side not in ("buy", "sell", None):
            raise VenueError(f"{self.name}: order {raw.get('id')} has side {raw_side!r}: {raw!r}")
        order_id = raw.get("id")
        if order_id is None:
            raise VenueError(f"{self.name}: order reply has no id: {raw!r}")
        return VenueOrder(
            venue=self.name,
            order_id=str(order_id),
            client_order_id=client_order_id or raw.get("clientOrderId"),
            symbol=raw.get("symbol") or symbol or "",
            side=raw_side,
            amount=order_amount,
            price=to_decimal(raw.get("price")),
            filled=filled,
            status=status,
            cost=cost,
            fee=fee,
            fee_currency=fee_info.get("currency") if isinstance(fee_info, dict) else None,
            fills=fills,
        )


def _granted(permissions: Any) -> list[str]:
    """Names of granted permissions from a list of names or a {name: bool/nested} mapping."""
    if isinstance(permissions, str):
        return [permissions]
    if isinstance(permissions, list):
        return [name for item in permissions for name in _granted(item)]
    if isinstance(permissions, dict):
        names: list[str] = []
        for key, value in permissions.items():
            if isinstance(value, dict | list):
                names.extend(f"{key}.{n}" for n in _granted(value))
            elif value in (True, 1, "1", "true", "True"):
                names.append(str(key))
        return names
    return []


def _status(raw: Any, filled: Decimal, amount: Decimal) -> VenueStatus:
    if raw in ("closed", "canceled", "rejected", "expired"):
        return "closed" if raw == "closed" else raw
    if raw in ("open", None, "canceling"):
        # Kraken's AddOrder reply carries no status: a freshly accepted order rests.
        return "closed" if amount and filled >= amount else "open"
    return "open"


def _fill(trade: dict[str, Any]) -> VenueFill | None:
    amount = to_decimal(trade.get("amount"))
    price = to_decimal(trade.get("price"))
    trade_id = trade.get("id")
    if amount is None or price is None or trade_id is None:
        return None
    fee_info = trade.get("fee") or {}
    return VenueFill(
        trade_id=str(trade_id),
        amount=amount,
        price=price,
        fee=to_decimal(fee_info.get("cost")) or Decimal(0),
        fee_currency=fee_info.get("currency"),
        timestamp=_ts(trade.get("timestamp")),
    )


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
