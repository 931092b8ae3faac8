"""A local HTTP server that answers like Kraken, Bitstamp or Bitfinex (v2) for the real ccxt classes.

Public answers are the recorded replies from ../shared/exchange-responses. Private order
endpoints keep real state (orders by client order id, fills, cancels) in the documented reply
shapes, so the ccxt classes parse them exactly as they parse the exchanges.
Knobs let a test make the next order call time out after the order was accepted, be
rate-limited, or be refused for insufficient funds.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: str

    def form(self) -> dict[str, str]:
        """The body as url-encoded form fields."""
        return dict(parse_qsl(self.body))

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body) if self.body else {}


@dataclass
class FakeOrder:
    """One order in the fake book."""

    id: str
    client_order_id: str
    pair: str
    side: str
    amount: Decimal
    price: Decimal
    created: float
    status: str = "open"
    fills: list[tuple[str, Decimal, Decimal, Decimal]] = field(default_factory=list)

    @property
    def filled(self) -> Decimal:
        return sum((f[1] for f in self.fills), Decimal(0))

    @property
    def cost(self) -> Decimal:
        return sum((f[1] * f[2] for f in self.fills), Decimal(0))

    @property
    def fee(self) -> Decimal:
        return sum((f[3] for f in self.fills), Decimal(0))


class FakeExchange:
    """Shared state and knobs; subclasses map paths to replies."""

    fee_rate = Decimal("0.0026")

    def __init__(self, recorded: dict[str, Any]) -> None:
        self.recorded = recorded
        self.requests: list[Request] = []
        self.orders: dict[str, FakeOrder] = {}
        self.balances: dict[str, Decimal] = {}
        self.next_id = 1
        self.next_trade = 1
        self.lock = threading.Lock()
        self.slow_next_order_s = 0.0  # accept the order, then answer too late
        self.fail_next_orders: list[str] = []  # error codes for the next order calls
        self.fail_next_lookups = 0  # lookups that answer 503 before working again

    def recorded_reply(self, method: str, index: int = 0) -> Any:
        return self.recorded["methods"][method][index]["httpResponse"]

    def handle(self, request: Request) -> tuple[int, Any]:
        raise NotImplementedError

    def fill(self, client_order_id: str, amount: Decimal, price: Decimal) -> None:
        """Execute part of an order as if the market traded through it."""
        with self.lock:
            order = self.orders[client_order_id]
            fee = (amount * price * self.fee_rate).quantize(Decimal("0.00000001"))
            order.fills.append((f"TR{self.next_trade:06d}", amount, price, fee))
            self.next_trade += 1
            if order.filled >= order.amount:
                order.status = "closed"

    def new_order(
        self, cloid: str, pair: str, side: str, amount: Decimal, price: Decimal, order_id: str
    ) -> FakeOrder:
        order = FakeOrder(order_id, cloid, pair, side, amount, price, time.time())
        self.orders[cloid] = order
        self.next_id += 1
        return order


class FakeKraken(FakeExchange):
    """Kraken's /0/public and /0/private endpoints."""

    def handle(self, request: Request) -> tuple[int, Any]:
        path = request.path
        if path == "/0/public/Ticker":
            return 200, self.recorded_reply("fetchTicker")
        if path == "/0/public/Trades":
            return 200, self.recorded_reply("fetchTrades")
        form = request.form()
        if path == "/0/private/AddOrder":
            if self.fail_next_orders:
                return 200, {"error": [self.fail_next_orders.pop(0)]}
            cloid = form["cl_ord_id"]
            with self.lock:
                if cloid in self.orders:
                    return 200, {"error": ["EOrder:Duplicate order"]}
                txid = f"O{self.next_id:05d}-FAKE-KRAKEN"
                self.new_order(
                    cloid,
                    form["pair"],
                    form["type"],
                    Decimal(form["volume"]),
                    Decimal(form["price"]),
                    txid,
                )
            if self.slow_next_order_s:
                delay, self.slow_next_order_s = self.slow_next_order_s, 0.0
                time.sleep(delay)
            reply = json.loads(json.dumps(self.recorded_reply("createOrder")))
            reply["result"]["txid"] = [txid]
            reply["result"]["descr"]["order"] = (
                f"{form['type']} {form['volume']} {form['pair']} @ limit {form['price']}"
            )
            return 200, reply
        if path in ("/0/private/OpenOrders", "/0/private/ClosedOrders"):
            if self.fail_next_lookups:
                self.fail_next_lookups -= 1
                return 503, {"error": ["EService:Unavailable"]}
            want_open = path.endswith("OpenOrders")
            selected = {
                o.id: self._order_json(o)
                for o in self.orders.values()
                if (o.status == "open") == want_open
                and form.get("cl_ord_id") in (None, o.client_order_id)
            }
            key = "open" if want_open else "closed"
            result: dict[str, Any] = {key: selected}
            if not want_open:
                result["count"] = len(selected)
            return 200, {"error": [], "result": result}
        if path == "/0/private/CancelOrder":
            for order in self.orders.values():
                if order.id == form.get("txid"):
                    if order.status == "open":
                        order.status = "canceled"
                    return 200, {"error": [], "result": {"count": 1}}
            return 200, {"error": ["EOrder:Unknown order"]}
        if path == "/0/private/QueryOrders":
            return 200, self.recorded_reply("fetchOrder", 0)
        if path in ("/0/private/Balance", "/0/private/BalanceEx"):
            return 200, {
                "error": [],
                "result": {
                    k: {"balance": str(v), "hold_trade": "0"} for k, v in self.balances.items()
                }
                if path.endswith("Ex")
                else {k: str(v) for k, v in self.balances.items()},
            }
        if path == "/0/private/GetApiKeyInfo":
            return 200, {"error": [], "result": self.key_info}
        return 404, {"error": [f"EGeneral:Unknown method {path}"]}

    def __init__(self, recorded: dict[str, Any]) -> None:
        super().__init__(recorded)
        # Shape of Kraken's GetApiKeyInfo (name, permissions by group); a test flips withdraw.
        self.key_info: dict[str, Any] = {
            "name": "farmctl-seller",
            "permissions": {
                "funds": {"query": True, "deposit": False, "withdraw": False},
                "orders": {"query_open": True, "query_closed": True, "modify": True},
            },
        }

    def _order_json(self, o: FakeOrder) -> dict[str, Any]:
        # Shape of Kraken's OpenOrders/ClosedOrders entries (as in the recorded fetchOpenOrders).
        avg = o.cost / o.filled if o.filled else Decimal(0)
        entry: dict[str, Any] = {
            "refid": None,
            "userref": 0,
            "cl_ord_id": o.client_order_id,
            "status": o.status if o.status != "canceled" else "canceled",
            "opentm": o.created,
            "starttm": 0,
            "expiretm": 0,
            "descr": {
                "pair": o.pair,
                "type": o.side,
                "ordertype": "limit",
                "price": str(o.price),
                "price2": "0",
                "leverage": "none",
                "order": f"{o.side} {o.amount} {o.pair} @ limit {o.price}",
                "close": "",
            },
            "vol": str(o.amount),
            "vol_exec": str(o.filled),
            "cost": str(o.cost),
            "fee": str(o.fee),
            "price": str(avg),
            "stopprice": "0.00000",
            "limitprice": "0.00000",
            "misc": "",
            "oflags": "fciq",
        }
        if o.status != "open":
            entry["closetm"] = o.created + 1
            entry["reason"] = "User requested" if o.status == "canceled" else None
        return entry


class FakeBitstamp(FakeExchange):
    """Bitstamp's /api/v2 endpoints."""

    def handle(self, request: Request) -> tuple[int, Any]:
        path = request.path
        if path == "/api/v2/ticker/btcusdt/":
            return 200, self.recorded_reply("fetchTicker")
        if path == "/api/v2/transactions/btcusdt/":
            return 200, self.recorded_reply("fetchTrades")
        form = request.form()
        if path in ("/api/v2/sell/btcusdt/", "/api/v2/buy/btcusdt/"):
            if self.fail_next_orders:
                return 200, {"status": "error", "reason": self.fail_next_orders.pop(0)}
            cloid = form["client_order_id"]
            side = "sell" if "/sell/" in path else "buy"
            with self.lock:
                order = self.new_order(
                    cloid,
                    "btcusdt",
                    side,
                    Decimal(form["amount"]),
                    Decimal(form["price"]),
                    str(1429545880227846 + self.next_id),
                )
            # Bitstamp's documented limit-order reply (as in ccxt's parseOrder notes).
            return 200, {
                "id": order.id,
                "client_order_id": cloid,
                "currency_pair": "BTC/USDT",
                "datetime": "2024-03-13 11:10:41.000000",
                "amount": str(order.amount),
                "price": str(order.price),
                "type": "1" if side == "sell" else "0",
            }
        if path == "/api/v2/order_status/":
            order = self.orders.get(form.get("client_order_id", ""))
            if order is None:
                return 200, {"status": "error", "reason": "Order not found."}
            status = {"open": "Open", "closed": "Finished", "canceled": "Canceled"}[order.status]
            return 200, {
                "id": int(order.id),
                "client_order_id": order.client_order_id,
                "status": status,
                "amount_remaining": str(order.amount - order.filled),
                "transactions": [
                    {
                        "tid": int(tid[2:]),
                        "price": str(price),
                        "btc": str(amount),
                        "usdt": str(amount * price),
                        "fee": str(fee),
                        "datetime": "2024-03-13 11:12:00.000000",
                        "type": 2,
                    }
                    for tid, amount, price, fee in order.fills
                ],
            }
        if path == "/api/v2/account_balances/":
            return 200, [
                {"currency": k.lower(), "total": str(v), "available": str(v), "reserved": "0"}
                for k, v in self.balances.items()
            ]
        return 404, {"status": "error", "reason": f"unknown path {path}"}


class FakeBitfinex(FakeExchange):
    """Bitfinex API v2 (what ccxt 4.5's `bitfinex` class speaks).

    The recorded bitfinex.json holds v1 bodies only, so the v2 ticker here is the documented v2
    array ([BID, BID_SIZE, ASK, ASK_SIZE, DAILY_CHANGE, DAILY_CHANGE_RELATIVE, LAST_PRICE,
    VOLUME, HIGH, LOW]) filled with the recorded v1 values (bid, ask, last, volume, high, low);
    the sizes and daily change are not in the recording and are set by hand.
    """

    def handle(self, request: Request) -> tuple[int, Any]:
        path = request.path
        if path == "/v2/ticker/tBTCUST":
            v1 = self.recorded_reply("fetchTicker")
            return 200, [
                float(v1["bid"]),
                1.5,
                float(v1["ask"]),
                2.0,
                0.0,
                0.0,
                float(v1["last_price"]),
                float(v1["volume"]),
                float(v1["high"]),
                float(v1["low"]),
            ]
        body = request.json()
        if path == "/v2/auth/w/order/submit":
            if self.fail_next_orders:
                return 500, ["error", 10001, self.fail_next_orders.pop(0)]
            amount = Decimal(str(body["amount"]))
            side = "sell" if amount < 0 else "buy"
            with self.lock:
                order = self.new_order(
                    str(body["cid"]),
                    body["symbol"],
                    side,
                    abs(amount),
                    Decimal(str(body["price"])),
                    str(95412102131 + self.next_id),
                )
            return 200, [
                int(time.time() * 1000),
                "on-req",
                None,
                None,
                [self._order_array(order)],
                None,
                "SUCCESS",
                "Submitting 1 orders.",
            ]
        if path == "/v2/auth/r/orders/tBTCUST":
            return 200, [self._order_array(o) for o in self.orders.values() if o.status == "open"]
        if path == "/v2/auth/r/orders/tBTCUST/hist":
            return 200, [self._order_array(o) for o in self.orders.values() if o.status != "open"]
        if path == "/v2/auth/r/permissions":
            return 200, self.permissions
        return 404, ["error", 10020, f"unknown path {path}"]

    def __init__(self, recorded: dict[str, Any]) -> None:
        super().__init__(recorded)
        # Documented /v2/auth/r/permissions rows: [scope, read, write].
        self.permissions: list[list[Any]] = [
            ["account", 1, 0],
            ["orders", 1, 1],
            ["wallets", 1, 0],
            ["withdraw", 0, 0],
        ]

    def _order_array(self, o: FakeOrder) -> list[Any]:
        sign = -1 if o.side == "sell" else 1
        remaining = (o.amount - o.filled) * sign
        status = {"open": "ACTIVE", "closed": "EXECUTED @ 0", "canceled": "CANCELED"}[o.status]
        if o.status == "open" and o.filled:
            status = f"PARTIALLY FILLED @ {o.cost / o.filled}({o.filled})"
        avg = float(o.cost / o.filled) if o.filled else 0
        ms = int(o.created * 1000)
        return [
            int(o.id), None, int(o.client_order_id), o.pair, ms, ms, float(remaining),
            float(o.amount * sign), "EXCHANGE LIMIT", None, None, None, 0, status, None, None,
            float(o.price), avg, 0, 0, None, None, None, 0, 0, None, None, None, "API>BFX",
            None, None, {},
        ]  # fmt: skip


class ExchangeServer:
    """ThreadingHTTPServer on 127.0.0.1 in a background thread, answering for one FakeExchange."""

    def __init__(self, app: FakeExchange) -> None:
        self.app = app
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                request = Request(self.command, parts.path, dict(parse_qsl(parts.query)), body)
                outer.app.requests.append(request)
                status, payload = outer.app.handle(request)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            do_GET = _serve
            do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ExchangeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def load_recorded(exchange_responses: Path, exchange_id: str) -> dict[str, Any]:
    """The recorded replies of one exchange."""
    data: dict[str, Any] = json.loads((exchange_responses / f"{exchange_id}.json").read_text())
    return data


# Markets as ccxt builds them from each exchange's market list (the recordings hold no market
# list, so precision and limits are set here by hand to the venues' published BTC/USDT rules).
def _market(
    exchange: ccxt.Exchange,
    symbol: str,
    market_id: str,
    amount_p: float,
    price_p: float,
    min_amount: float,
    min_cost: float | None,
    maker: float,
    taker: float,
    **extra: Any,
) -> dict[str, Any]:
    base, quote = symbol.split("/")
    market = {
        "id": market_id, "symbol": symbol, "base": base, "quote": quote, "baseId": base,
        "quoteId": quote, "type": "spot", "spot": True, "margin": False, "swap": False,
        "future": False, "option": False, "contract": False, "active": True,
        "maker": maker, "taker": taker, "precision": {"amount": amount_p, "price": price_p},
        "limits": {"amount": {"min": min_amount, "max": None}, "price": {"min": None, "max": None},
                   "cost": {"min": min_cost, "max": None}, "leverage": {"min": None, "max": None}},
        "info": {},
    }  # fmt: skip
    market.update(extra)
    return exchange.safe_market_structure(market)


def install_markets(exchange: ccxt.Exchange) -> None:
    """Give a ccxt exchange its BTC/USDT (and Kraken's LTC/USDT) market without a network call."""
    if exchange.id == "kraken":
        markets = [
            _market(exchange, "BTC/USDT", "XBTUSDT", 1e-8, 0.1, 0.00005, 0.5, 0.0025, 0.004,
                    altname="XBTUSDT", wsId="XBT/USDT"),
            _market(exchange, "LTC/USDT", "LTCUSDT", 1e-8, 0.01, 0.05, 0.5, 0.0025, 0.004,
                    altname="LTCUSDT", wsId="LTC/USDT"),
        ]  # fmt: skip
        exchange.set_markets(markets)
        exchange.options["marketsByAltname"] = exchange.index_by(markets, "altname")
    elif exchange.id == "bitstamp":
        exchange.set_markets(
            [_market(exchange, "BTC/USDT", "btcusdt", 1e-8, 1.0, None, 10.0, 0.003, 0.004)]
        )
    elif exchange.id == "bitfinex":
        # Bitfinex prices have 5 significant digits (precisionMode SIGNIFICANT_DIGITS).
        exchange.set_markets(
            [_market(exchange, "BTC/USDT", "tBTCUST", 8, 5, 0.00004, None, 0.001, 0.002)]
        )
    else:
        raise ValueError(f"no markets for {exchange.id}")
