"""One treasury tick against a (fake) Kraken over HTTP with the real ccxt class, for the crash tests.

argv: workdir kraken_url. The fake Kraken lives in the test process and keeps its orders across
the killed and the restarted runner; the ledger is a SQLite file in workdir.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from controller.paths import exchange_responses_dir
from tests.treasury.fake_exchange import install_markets
from treasury.executor import Executor, ExecutorSettings
from treasury.ledger import Ledger
from treasury.risk import KillSwitch, RiskLimits
from treasury.strategy import StrategyParams
from treasury.tick import TickSettings, run_tick
from treasury.venues.ccxt_venue import CcxtVenue


def main() -> int:
    workdir, url = Path(sys.argv[1]), sys.argv[2]
    logging.basicConfig(level=logging.WARNING)
    ledger = Ledger(sa.create_engine(f"sqlite:///{workdir / 'ledger.db'}"))
    ledger.create_tables()
    secret = base64.b64encode(b"crash-test-secret").decode()
    venue = CcxtVenue.create("kraken", "key", secret, name="kraken", api_url=url, timeout_ms=2000)
    venue.exchange.enableRateLimit = False
    install_markets(venue.exchange)
    responses = exchange_responses_dir()
    assert responses is not None
    recorded = json.loads((responses / "kraken.json").read_text())
    ticker = recorded["methods"]["fetchTicker"][0]["httpResponse"]["result"]["XBTUSDT"]
    # Today's open, today's VWAP and the last trade of the recorded ticker as the price history.
    closes = [float(ticker["o"]), float(ticker["p"][0]), float(ticker["c"][0])]
    settings = TickSettings(
        symbol="BTC/USDT",
        params=StrategyParams(
            band_method="fixed",
            fixed_pmin=50_000.0,
            fixed_pmax=74_000.0,
            momentum_window=1,
            momentum_strength=0.0,
            min_trade_fraction=0.0,
        ),
        limits=RiskLimits(Decimal("0.2"), Decimal("5"), Decimal("0.05")),
        price_offset_fraction=Decimal("0.001"),
    )
    executor = Executor(ledger, {"kraken": venue}, ExecutorSettings(not_found_grace_s=0))
    run_tick(ledger, executor, [venue], closes, settings, KillSwitch(ledger))
    return 0


if __name__ == "__main__":
    sys.exit(main())
