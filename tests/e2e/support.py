"""Helpers shared by the end-to-end tests: the farm config, a webhook catcher, ledger checks."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from controller.config import FarmConfig, load_config
from controller.demo import demo_config, demo_fleet, free_port
from miners.sim.simulator import Simulator

REPO = Path(__file__).resolve().parents[2]
FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)


class SimThread:
    """A simulated fleet on its own event loop in a thread: it outlives every daemon.

    `rigs` is a total (the demo's mix of families, scaled) or a mix `{family: count}`."""

    def __init__(self, rigs: int | dict[str, int]) -> None:
        self.loop = asyncio.new_event_loop()
        mix = demo_fleet(rigs) if isinstance(rigs, int) else rigs
        self.sim = Simulator(mix, ramp_up_s=0.1, ramp_down_s=0.1)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(30)

    def close(self) -> None:
        """Stop the rigs' servers and the loop."""
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def e2e_config(
    sim: Simulator, out: Path, strategy: dict[str, Any] | None = None, **treasury_risk: float
) -> FarmConfig:
    """The example config with the simulated fleet, state under `out`, tight sale limits."""
    base = load_config(REPO / "config" / "farm.example.toml")
    raw = demo_config(base, sim, out, free_port()).model_dump(mode="json", exclude_none=True)
    raw["metrics"] = {"enabled": False}
    raw["treasury"]["risk"] = raw["treasury"]["risk"] | treasury_risk
    raw["treasury"]["strategy"] = raw["treasury"]["strategy"] | (strategy or {})
    raw["scheduler"] = raw["scheduler"] | {"misfire_grace_s": 5}
    raw["planner"] = raw["planner"] | {"stagger_batch": 50, "stagger_delay_s": 0.05}
    return FarmConfig.model_validate(raw)


def with_webhook(config: FarmConfig, env_var: str) -> FarmConfig:
    """`config` with sale reports and alerts POSTed to the URL in `env_var`."""
    raw = config.model_dump(mode="json", exclude_none=True)
    raw["reports"]["webhook"] = {"enabled": True, "url": {"env": env_var}, "format": "plain"}
    return FarmConfig.model_validate(raw)


@dataclass
class Catcher:
    """What a local webhook server received."""

    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def webhook_catcher() -> Iterator[Catcher]:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""
    server: ThreadingHTTPServer
    catcher: Catcher

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            catcher.bodies.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    catcher = Catcher(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield catcher
    finally:
        server.shutdown()
        server.server_close()


def ledger_vs_paper(database_url: str, paper_state: Path) -> dict[str, Any]:
    """The ledger's view next to the paper venue's own state file (read straight from disk)."""
    from treasury.tables import Deposit, Fill, Order

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            deposits = conn.execute(select(Deposit.currency, Deposit.amount)).all()
            fills = conn.execute(select(Fill.amount, Fill.price, Fill.fee)).all()
            orders = conn.execute(
                select(Order.client_order_id, Order.amount, Order.filled, Order.status)
            ).all()
    finally:
        engine.dispose()
    state = json.loads(paper_state.read_text())
    return {
        "ledger_btc": sum((Decimal(a) for c, a in deposits if c == "BTC"), Decimal(0))
        - sum((Decimal(a) for a, _, _ in fills), Decimal(0)),
        "ledger_usd": sum((Decimal(a) * Decimal(p) - Decimal(f) for a, p, f in fills), Decimal(0)),
        "venue_btc": Decimal(state["balances"].get("BTC", "0")),
        "venue_usd": Decimal(state["balances"].get("USD", "0")),
        "ledger_orders": {o[0]: (Decimal(o[2]), o[3]) for o in orders},
        "venue_orders": {
            o["client_order_id"]: Decimal(o["filled"]) for o in state["orders"].values()
        },
        "venue_order_ids": [o["client_order_id"] for o in state["orders"].values()],
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def toml_text(raw: dict[str, Any]) -> str:
    """A config dict (`FarmConfig.model_dump(mode="json")`) as TOML `farmctl run` reads."""
    lines: list[str] = []
    for key, value in raw.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            raise TypeError(f"top-level {key} is not a table")
        lines.append("")
    return "\n".join(lines)


def seed_recorded_prices(database_url: str, data_dir: Path, zone: str, day: datetime) -> int:
    """Store the recorded ERCOT DA and RT prices around `day` in the price store, as the
    `prices` job would have fetched them; returns the rows written."""
    import pandas as pd

    from controller import migrate
    from forecasting.ercot import ercot_file, load_ercot_hourly
    from forecasting.price_store import upsert_prices

    migrate.upgrade(database_url)
    prices = load_ercot_hourly(ercot_file(data_dir), zone)
    lo, hi = pd.Timestamp(day) - pd.Timedelta(days=200), pd.Timestamp(day) + pd.Timedelta(days=3)
    engine = create_engine(database_url)
    try:
        written = 0
        for series in (prices.day_ahead, prices.real_time):
            cut = series.prices[(series.prices.index >= lo) & (series.prices.index < hi)]
            written += upsert_prices(engine, replace(series, prices=cut))
        return written
    finally:
        engine.dispose()


def seed_opening_coins(database_url: str, paper_state: Path, amount: Decimal, at: datetime) -> None:
    """A treasury that already holds `amount` unsold coins: one ledger deposit, the paper venue
    credited (what `TreasuryService.credit_opening` does inside the daemon)."""
    from treasury.ledger import Ledger
    from treasury.venues.paper import PaperVenue

    engine = create_engine(database_url)
    try:
        if Ledger(engine).record_deposit("paper", "opening:e2e", "BTC", amount, at, "estimate"):
            PaperVenue(name="paper", state_path=paper_state).deposit("BTC", amount)
    finally:
        engine.dispose()
