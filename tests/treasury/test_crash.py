"""Kill the process at every step of the order lifecycle, restart, and compare with a clean run.

Each run is a separate Python process (tests/treasury/crash_runner.py) working on a SQLite
ledger and a paper venue persisted on disk; FARMCTL_CRASH_AT makes it `os._exit(137)` at one
named step. After the restart, the venue must hold exactly the orders of a crash-free run (no
duplicate), and the ledger must match the venue order by order and fill by fill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.treasury.crash_runner import RULES
from treasury.crashpoints import CRASH_ENV, STEPS
from treasury.ledger import Ledger
from treasury.price_data import load_bars
from treasury.venues.paper import PaperVenue

ROOT = Path(__file__).resolve().parents[2]
FIRST, LAST = 24, 26  # three consecutive hours: place, partial fill + cancel + re-place, again


@pytest.fixture(scope="module")
def bars_file(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz").between(
        "2022-06-01T00:00:00", "2022-06-03T00:00:00"
    )
    rows = [
        {
            "timestamp": str(bars.timestamp[i]) + "+00:00",
            "open": float(bars.open[i]),
            "high": float(bars.high[i]),
            "low": float(bars.low[i]),
            "close": float(bars.close[i]),
            "volume": float(bars.volume[i]),
        }
        for i in range(len(bars))
    ]
    path = tmp_path_factory.mktemp("bars") / "bars.json"
    path.write_text(json.dumps(rows))
    return path


def run(
    workdir: Path, bars_file: Path, crash_at: str | None, first: int = FIRST, last: int = LAST
) -> int:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    proc = subprocess.run(
        [sys.executable, "-m", "tests.treasury.crash_runner", str(workdir), str(bars_file), str(first), str(last)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode in (0, 137), proc.stderr
    return proc.returncode


def final_state(workdir: Path) -> dict[str, object]:
    venue = PaperVenue(rules=RULES, state_path=workdir / "paper.json")
    ledger = Ledger(sa.create_engine(f"sqlite:///{workdir / 'ledger.db'}"))
    venue_orders = venue.all_orders()
    ledger_orders = {o.client_order_id: o for o in ledger.orders()}
    # Ledger == venue: every venue order is in the ledger with the same fill, fees and state.
    for order in venue_orders:
        assert order.client_order_id is not None
        rec = ledger_orders[order.client_order_id]
        assert rec.venue_order_id == order.order_id
        assert (rec.filled, rec.cost, rec.fee) == (order.filled, order.cost, order.fee)
        expected = {
            "open": ("open", "partially_filled"),
            "closed": ("filled",),
            "canceled": ("cancelled",),
        }
        assert rec.status in expected[order.status]
    # Ledger orders the venue never saw were closed as such, never left dangling.
    seen = {o.client_order_id for o in venue_orders}
    for cloid, rec in ledger_orders.items():
        if cloid not in seen:
            assert rec.status == "cancelled" and rec.note == "never reached the venue"
    fills = ledger.fills_between(
        min(o.created_at for o in ledger_orders.values()).replace(year=2000),
        min(o.created_at for o in ledger_orders.values()).replace(year=2100),
    )
    venue_fills = sorted((f.trade_id, f.amount, f.price) for o in venue_orders for f in o.fills)
    assert sorted((f.trade_id, f.amount, f.price) for f in fills) == venue_fills
    assert sum(1 for o in venue_orders if o.status == "open") <= 1  # never two live orders
    assert len({o.order_id for o in venue_orders}) == len(venue_orders)
    balances = venue.fetch_balance()
    # A tick re-run after a restart may cancel and replace a resting order that never traded;
    # every order that traded or still rests must be the clean run's.
    traded_or_live = [o for o in venue_orders if o.filled > 0 or o.status == "open"]
    return {
        "orders": sorted(
            (str(o.amount), str(o.price), o.status, str(o.filled)) for o in traded_or_live
        ),
        "btc": balances["BTC"].total,
        "usd": balances["USD"].total,
    }


@pytest.fixture(scope="module")
def reference(bars_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    workdir = tmp_path_factory.mktemp("clean")
    assert run(workdir, bars_file, None) == 0
    state = final_state(workdir)
    assert state["btc"] < Decimal(1)  # the clean run did sell
    return state


# The two steps where nothing is half-written run with `make eval` (slow) to keep `make test` short.
STEP_PARAMS = [
    pytest.param(s, marks=pytest.mark.slow) if s in ("before_intent", "after_recover") else s
    for s in STEPS
]


@pytest.mark.parametrize("step", STEP_PARAMS)
def test_kill_at_each_step_leaves_no_duplicate(
    step: str, bars_file: Path, reference: dict[str, object], tmp_path: Path
) -> None:
    assert run(tmp_path, bars_file, step) == 137, f"step {step} was never reached"
    # Restart without the crash hook: it resumes at the killed tick.
    assert run(tmp_path, bars_file, None) == 0
    assert final_state(tmp_path) == reference


@pytest.mark.slow
def test_sigkill_at_random_moments(bars_file: Path, tmp_path: Path) -> None:
    """SIGKILL from outside at arbitrary lines of a 12-tick run, twice, then finish it."""
    first, last = 24, 35
    clean = tmp_path / "clean"
    clean.mkdir()
    assert run(clean, bars_file, None, first, last) == 0
    killed = tmp_path / "killed"
    killed.mkdir()
    kills = 0
    for delay in (1.2, 1.9):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.treasury.crash_runner", str(killed), str(bars_file),
             str(first), str(last)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            kills += 1
    assert run(killed, bars_file, None, first, last) == 0
    assert kills >= 1, "the run finished before any kill: lower the delays"
    assert final_state(killed) == final_state(clean)


@pytest.mark.parametrize(
    "step",
    [
        pytest.param("after_sent_mark", marks=pytest.mark.slow),
        "after_venue_accept",  # the order is at the venue, the ledger still says `sent`
        pytest.param("after_ledger_update", marks=pytest.mark.slow),
    ],
)
def test_kill_against_kraken_over_http(step: str, exchange_responses: Path, tmp_path: Path) -> None:
    """The real ccxt Kraken class and a Kraken fake that keeps its orders across the kill."""
    from tests.treasury.fake_exchange import ExchangeServer, FakeKraken, load_recorded

    app = FakeKraken(load_recorded(exchange_responses, "kraken"))
    app.balances = {"XXBT": Decimal("0.5"), "USDT": Decimal("0")}
    with ExchangeServer(app) as server:

        def tick(crash_at: str | None) -> int:
            env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
            if crash_at:
                env[CRASH_ENV] = crash_at
            proc = subprocess.run(
                [sys.executable, "-m", "tests.treasury.crash_runner_kraken", str(tmp_path), server.url],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert proc.returncode in (0, 137), proc.stderr
            return proc.returncode

        assert tick(step) == 137
        assert tick(None) == 0
    sent = [r.form()["cl_ord_id"] for r in app.requests if r.path == "/0/private/AddOrder"]
    assert len(sent) == len(set(sent)) == len(app.orders)  # no client order id sent twice
    assert sum(1 for o in app.orders.values() if o.status == "open") == 1
    ledger = Ledger(sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))
    records = {o.client_order_id: o for o in ledger.orders()}
    assert set(app.orders) <= set(records)
    for cloid in set(records) - set(app.orders):  # killed before the send: closed, never sent
        assert (records[cloid].status, records[cloid].note) == (
            "cancelled",
            "never reached the venue",
        )
    for cloid, order in app.orders.items():
        rec = records[cloid]
        assert rec.venue_order_id == order.id
        assert rec.status == {"open": "open", "canceled": "cancelled"}[order.status]
        assert (rec.amount, rec.price) == (order.amount, order.price)
    # 0.2 BTC (the order limit) at the recorded bid 73380.6 + 0.1 %, rounded up to the tick.
    live = next(o for o in app.orders.values() if o.status == "open")
    assert (live.amount, live.price) == (Decimal("0.2"), Decimal("73454.0"))
