"""The seller lock on the real PostgreSQL: one holder, takeover after SIGKILL, never two at once."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import typing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.clock import Clock, hour_floor
from controller.config import FarmConfig, load_config
from controller.gateway import Gateway
from controller.seller_lock import KeepAlive, SellerGate, SellerLock, account_key, lock_id
from controller.treasury_service import TreasuryService, synthetic_bars
from treasury.ledger import Ledger
from treasury.venues.paper import PaperVenue

REPO = Path(__file__).resolve().parents[2]
KEY = account_key("kraken", "main")
START = hour_floor(datetime.now(UTC))
FAR_PAST, FAR_FUTURE = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)

HOLDER = textwrap.dedent(
    """
    import sys, time
    import sqlalchemy as sa
    from controller.seller_lock import SellerLock
    lock = SellerLock(sa.create_engine(sys.argv[1]), sys.argv[2])
    assert lock.try_acquire(), "holder could not take a free lock"
    print("held", flush=True)
    while True:
        assert lock.held()
        time.sleep(0.05)
    """
)


def _holder(url: str, key: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, key],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_id_is_stable_and_distinct() -> None:
    assert lock_id(KEY) == lock_id("kraken:main")
    assert lock_id(KEY) != lock_id(account_key("kraken", "second"))
    assert -(2**63) <= lock_id(KEY) < 2**63
    assert account_key("bitstamp", "acct1") == "bitstamp:acct1"


def test_second_gateway_cannot_take_a_held_lock(postgres_url: str) -> None:
    first = SellerLock(sa.create_engine(postgres_url), KEY)
    second = SellerLock(sa.create_engine(postgres_url), KEY)
    other_account = SellerLock(sa.create_engine(postgres_url), account_key("kraken", "second"))
    try:
        assert first.try_acquire()
        assert first.try_acquire()  # re-asking keeps it
        assert not second.try_acquire()
        assert not second.held()
        assert other_account.try_acquire()  # another account has its own seller
        assert first.held()
        first.release()
        assert not first.held()
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        for lock in (first, second, other_account):
            lock.release()


def test_lock_session_carries_the_keepalive_bound(postgres_url: str) -> None:
    """The server drops a vanished holder's session within idle + interval * count seconds."""
    lock = SellerLock(sa.create_engine(postgres_url), KEY, KeepAlive(7, 2, 4))
    try:
        assert lock.try_acquire()
        assert lock._conn is not None
        shown = {
            name: lock._conn.execute(sa.text(f"SHOW {name}")).scalar_one()
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        }
        assert shown == {
            "tcp_keepalives_idle": "7",
            "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "4",
        }
        assert lock.keepalive.bound_s == 15
        assert lock._conn.execute(sa.text("SHOW tcp_user_timeout")).scalar_one() == "15000"  # ms
    finally:
        lock.release()


def test_terminated_session_means_not_held(postgres_url: str) -> None:
    """A connection the server dropped (here: an admin kills the backend) reports the lock gone."""
    engine = sa.create_engine(postgres_url)
    lock = SellerLock(engine, KEY)
    try:
        assert lock.try_acquire()
        assert lock._conn is not None
        pid = lock._conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        assert not lock.held()
        other = SellerLock(sa.create_engine(postgres_url), KEY)
        assert other.try_acquire()
        assert not lock.try_acquire()
        other.release()
        assert lock.try_acquire()  # reconnects and takes it again
    finally:
        lock.release()


def test_sigkilled_holder_is_replaced_within_bound(postgres_url: str) -> None:
    proc = _holder(postgres_url, KEY)
    standby = SellerLock(sa.create_engine(postgres_url), KEY)
    try:
        for _ in range(5):
            assert not standby.try_acquire()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        while not standby.try_acquire():
            assert time.monotonic() - killed < 5.0, "standby did not take over within 5 s"
            time.sleep(0.02)
        takeover_s = time.monotonic() - killed
        print(f"takeover after SIGKILL: {takeover_s * 1000:.0f} ms")
        # The kernel closes a killed process's socket: the server frees the lock at once.
        assert takeover_s < 1.0
        assert standby.held()
    finally:
        proc.kill()
        proc.wait()
        standby.release()


@pytest.mark.slow
def test_takeover_time_over_repeated_kills(postgres_url: str) -> None:
    """The figure in docs/scaling.md: 20 SIGKILLed holders, a standby retrying every 5 ms."""
    times = []
    for i in range(20):
        key = account_key("kraken", f"measure{i}")
        proc = _holder(postgres_url, key)
        standby = SellerLock(sa.create_engine(postgres_url), key)
        try:
            assert not standby.try_acquire()
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            while not standby.try_acquire():
                assert time.monotonic() - killed < 5.0
                time.sleep(0.005)
            times.append(time.monotonic() - killed)
        finally:
            proc.kill()
            proc.wait()
            standby.release()
    times.sort()
    print(
        f"takeover after SIGKILL n={len(times)} median={statistics.median(times) * 1000:.0f} ms"
        f" max={times[-1] * 1000:.0f} ms"
    )
    assert times[-1] < 1.0


def test_never_two_holders_while_they_change_hands(postgres_url: str) -> None:
    """Two gateways keep asking while the lock changes hands twice; no poll sees two holders."""
    gates = [SellerGate(sa.create_engine(postgres_url), [KEY]) for _ in range(2)]
    proc = _holder(postgres_url, KEY)

    def poll(until: float, stop_when_held: bool) -> tuple[bool, bool]:
        while True:
            states = (gates[0].ensure(), gates[1].ensure())
            assert not all(states), "two sellers at once"
            if (stop_when_held and any(states)) or time.monotonic() > until:
                return states
            time.sleep(0.01)

    try:
        assert poll(time.monotonic() + 0.3, False) == (False, False)  # the subprocess sells
        proc.kill()
        proc.wait()
        first = poll(time.monotonic() + 5.0, True)
        assert any(first)
        seller, standby = (gates[0], gates[1]) if first[0] else (gates[1], gates[0])
        assert (seller.role, standby.role) == ("seller", "standby")
        seller.release()  # a clean shutdown: the standby takes over on its next try
        deadline = time.monotonic() + 2.0
        while not standby.ensure():
            assert time.monotonic() < deadline
        states = poll(time.monotonic() + 0.3, False)
        assert states == ((True, False) if standby is gates[0] else (False, True))
        assert sum(g.takeovers for g in gates) == 2
    finally:
        proc.kill()
        proc.wait()
        for gate in gates:
            gate.release()


def test_gate_holds_every_account_or_none(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    blocker = SellerLock(engine, account_key("bitstamp", "b"))
    gate = SellerGate(engine, [account_key("kraken", "k"), account_key("bitstamp", "b")])
    rival = SellerLock(sa.create_engine(postgres_url), account_key("kraken", "k"))
    try:
        assert blocker.try_acquire()
        assert not gate.ensure()
        assert gate.role == "standby"
        assert rival.try_acquire()  # the gate gave back the kraken lock it could take
        rival.release()
        blocker.release()
        assert gate.ensure()
        assert gate.role == "seller" and gate.takeovers == 1
    finally:
        for lock in (blocker, rival):
            lock.release()
        gate.release()


def test_sqlite_lock_always_succeeds(tmp_path: Path) -> None:
    """One SQLite file is one gateway: no rival exists, and an in-process restart must sell."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'farm.db'}")
    old, restarted = SellerLock(engine, KEY), SellerLock(engine, KEY)
    assert old.try_acquire() and old.held()
    assert restarted.try_acquire() and restarted.held()
    restarted.release()
    assert not restarted.held()
    gate = SellerGate(engine, [KEY, account_key("paper", "paper")])
    assert gate.ensure() and gate.role == "seller" and gate.keys == "kraken:main,paper:paper"


def _treasury(postgres_url: str, base: Path, site: str, data: Path) -> TreasuryService:
    """One gateway's treasury on the shared PostgreSQL database; its paper venue keeps its state
    under `data` (one state file: one exchange account, when gateways share `data`)."""
    raw = load_config(REPO / "config" / "farm.example.toml").model_dump(
        mode="json", exclude_none=True
    )
    raw["database"] = raw.get("database", {}) | {"url": postgres_url}
    raw["farm"]["data_dir"] = str(data)
    raw["metrics"] = {"enabled": False}
    # Prices far above the band: the strategy wants every coin in fiat, so a seller sells.
    raw["treasury"]["strategy"] |= {
        "band_method": "fixed",
        "pmin": 1000.0,
        "pmax": 2000.0,
        "band_lookback_hours": 48,
    }
    raw["treasury"]["risk"] |= {"max_order_btc": 0.01, "max_sold_per_day_btc": 1.0}
    config = FarmConfig.model_validate(raw)
    gateway = Gateway(config, base_dir=base, clock=Clock(), sites=[site])
    bars = synthetic_bars(START - timedelta(days=5), 24 * 8)
    return TreasuryService(gateway, bars=bars, price_source="synthetic (test)")


def test_two_gateways_sharing_postgresql_only_one_sells(postgres_url: str, tmp_path: Path) -> None:
    """Two gateways' treasuries tick on one database and one exchange account: one sells, the
    other stays on standby; when the seller stops, the standby takes over, reconciles the open
    orders by client order id and sells from its next tick."""
    # One exchange account seen by both gateways: one paper state file, both built at start.
    first = _treasury(postgres_url, tmp_path / "gw1", "west", tmp_path / "data")
    second = _treasury(postgres_url, tmp_path / "gw2", "east", tmp_path / "data")
    ledger = Ledger(first.gateway.engine)
    try:
        first.credit_opening(20_000.0, 30, START)
        for hour in range(3):
            now = START + timedelta(hours=hour, minutes=5)
            assert first.tick(now) is not None and first.view.seller == "seller"
            assert second.tick(now) is None and second.view.seller == "standby"
        placed = ledger.orders()
        assert placed, "the seller placed no order"
        assert second.view.last_tick is None  # the standby never ran a tick
        left_open = {o.client_order_id for o in ledger.unresolved_orders()}
        assert left_open, "the first seller's last order rests on the venue until the next bar"
        first.seller.release()  # the first gateway stops (its death frees the lock the same way)
        now = START + timedelta(hours=3, minutes=5)
        result = second.tick(now)
        assert second.view.seller == "seller" and second.seller.takeovers == 1
        assert result is not None and result.skipped is None
        # Recovery came first: the orders the first seller left open are final now.
        for cloid in left_open:
            record = ledger.get_order(cloid)
            assert record is not None and record.is_final, record
        assert len(ledger.orders()) > len(placed)  # the new seller sells
        assert first.tick(now + timedelta(hours=1)) is None and first.view.seller == "standby"
        fills = ledger.fills_between(FAR_PAST, FAR_FUTURE, side="sell")
        assert sum(f.amount for f in fills) > 0
        # The new seller read the account as the first one left it (its paper venue was loaded
        # before the first sale): the state file explains every fill of both sellers.
        venue = PaperVenue(name="paper", state_path=tmp_path / "data" / "paper-paper.json")
        proceeds = sum((f.amount * f.price - f.fee for f in fills), Decimal(0))
        assert venue.fetch_balance()["USD"].total == proceeds > 0
        assert second.view.fiat == proceeds
    finally:
        for service in (first, second):
            service.seller.release()
            service.gateway.engine.dispose()


def test_takeover_continues_the_sellers_bookkeeping(postgres_url: str, tmp_path: Path) -> None:
    """The last decision and the reports sent belong to the account, not to the gateway: a new
    seller neither decides again inside the decision interval nor skips the day the previous
    seller had not reported yet."""
    from controller.mqtt.tables import MqttOutbox

    first = _treasury(postgres_url, tmp_path / "gw1", "west", tmp_path / "data")
    second = _treasury(postgres_url, tmp_path / "gw2", "east", tmp_path / "data")
    typing.cast(sa.Table, MqttOutbox.__table__).create(first.gateway.engine)  # reports go out here
    try:
        first.credit_opening(20_000.0, 30, START)
        decided = first.tick(START + timedelta(minutes=5))
        assert decided is not None and decided.decision is not None
        assert first.daily_reports(START + timedelta(minutes=5)) == []  # the first day starts
        first.seller.release()
        # Five minutes on, with a 60-minute decision interval: the new seller does not decide.
        assert second.tick(START + timedelta(minutes=10)) is None
        assert second.view.seller == "seller"
        day = START.date().isoformat()
        assert second.daily_reports(START + timedelta(days=1, minutes=10)) == [day]
        assert first.reported_through() == START.date()  # seen from the standby too
        with second.gateway.engine.connect() as conn:
            reports = conn.scalars(
                sa.select(MqttOutbox.msg_id).where(MqttOutbox.msg_id.like("sale-report-%"))
            ).all()
        assert reports == [f"sale-report-{day}"]
    finally:
        for service in (first, second):
            service.seller.release()
            service.gateway.engine.dispose()


def test_standby_books_its_sites_mined_coins_and_the_seller_credits_them(
    postgres_url: str, tmp_path: Path
) -> None:
    """A multi-site farm sells one account: the standby gateway's rigs mine too. It books its
    own sites' coins in the shared ledger each hour; the seller credits them to the account."""
    from miners.status import RigStatus

    first = _treasury(postgres_url, tmp_path / "gw1", "west", tmp_path / "data")
    second = _treasury(postgres_url, tmp_path / "gw2", "east", tmp_path / "data")
    ledger = Ledger(first.gateway.engine)
    first.gateway.state.statuses = {"w1": RigStatus(state="hashing", hashrate_ths=100.0)}
    second.gateway.state.statuses = {
        "e1": RigStatus(state="hashing", hashrate_ths=200.0),
        "e2": RigStatus(state="curtailed", hashrate_ths=0.0),
    }
    try:
        for minutes in (5, 35, 65):  # two samples in hour 0, hour 0 over at 1:05
            now = START + timedelta(minutes=minutes)
            first.tick(now)
            assert second.tick(now) is None and second.view.seller == "standby"
        mined = {
            d.reference.split(":")[1]: d.amount
            for d in ledger.deposits_between(FAR_PAST, FAR_FUTURE)
            if d.reference.startswith("mined:")
        }
        assert set(mined) == {"west", "east"}
        assert mined["east"] > 0
        # 200 TH/s against 100 TH/s in the same hour at the same price: twice the coins (8 dp).
        assert abs(mined["east"] - 2 * mined["west"]) <= Decimal("0.00000001")
        # The seller's next tick credits the standby's coins to the one paper account.
        first.tick(START + timedelta(minutes=70))
        venue = PaperVenue(name="paper", state_path=tmp_path / "data" / "paper-paper.json")
        sold = sum(
            (f.amount for f in ledger.fills_between(FAR_PAST, FAR_FUTURE, side="sell")),
            Decimal(0),
        )
        assert venue.fetch_balance()["BTC"].total == mined["west"] + mined["east"] - sold
        # Booked once: more standby ticks in the same hour add nothing.
        second.tick(START + timedelta(minutes=75))
        again = [
            d for d in ledger.deposits_between(FAR_PAST, FAR_FUTURE) if ":east:" in d.reference
        ]
        assert len(again) == 1
    finally:
        for service in (first, second):
            service.seller.release()
            service.gateway.engine.dispose()
