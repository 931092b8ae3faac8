"""The main query paths on PostgreSQL use an index or partition pruning, at realistic row counts.

Rows are made server-side (generate_series) so the module's data takes a few seconds: 115,200
telemetry rows over 2 days (4 sites x 100 rigs every 10 min), 24,000 plan slots (60 hours),
105,120 prices (4 zones x 3 kinds x 1 year), 50,000 orders of which 10 are open. Where the code has a function for the query, the
test runs that function and EXPLAINs the SQL it actually sent.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from controller import migrate, partitions
from controller.mqtt.tables import RigTelemetry
from controller.reconcile import RigPlace, desired_states
from controller.storage import make_engine, session_factory
from forecasting.price_store import load_prices
from forecasting.prices import PriceKind
from tests.conftest import POSTGRES_HOST, POSTGRES_PORT
from treasury.ledger import Ledger

SITES, RIGS_PER_SITE = 4, 100
NOW = datetime.now(UTC).replace(minute=17, second=0, microsecond=0)
TODAY = NOW.date()


@dataclass(frozen=True, slots=True)
class Scan:
    """One plan node that reads a relation."""

    node: str
    relation: str | None
    index: str | None


def _scans(plan: dict[str, Any]) -> list[Scan]:
    found = []
    if "Relation Name" in plan or "Index Name" in plan:
        found.append(Scan(plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name")))
    for child in plan.get("Plans", []):
        found.extend(_scans(child))
    return found


def _explain(engine: sa.Engine, statement: str, parameters: Any = None) -> list[Scan]:
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one()
    return _scans(raw[0]["Plan"])


def _explain_select(engine: sa.Engine, query: sa.Select[Any]) -> list[Scan]:
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    return _explain(engine, str(compiled))


def _captured(engine: sa.Engine, run: Any) -> list[tuple[str, Any]]:
    """The SELECT statements `run()` sends, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return sent


def _indexed(scans: list[Scan]) -> bool:
    """Read through an index, and nothing read whole (a bitmap heap scan follows its index)."""
    return any(s.index for s in scans) and not any(s.node == "Seq Scan" for s in scans)


def _relations(scans: list[Scan]) -> set[str]:
    return {s.relation for s in scans if s.relation is not None}


@pytest.fixture(scope="module")
def farm_db() -> Iterator[sa.Engine]:
    """A migrated schema filled with a small farm's history, analysed."""
    try:
        socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=1.0).close()
    except OSError:
        pytest.skip(f"PostgreSQL not answering on {POSTGRES_HOST}:{POSTGRES_PORT}")
    base = f"postgresql+psycopg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
    schema = f"t_plans_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base}?options=-csearch_path%3D{schema}"
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        partitions.ensure_partitions(engine, "rig_telemetry", TODAY - timedelta(days=1))
        start = partitions.day_start(TODAY - timedelta(days=1))
        params = {"start": start, "now": NOW, "sites": SITES, "rigs": RIGS_PER_SITE}
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO rig_telemetry (msg_id, time, received_at, site, rig, state,"
                    " hashrate_ths, power_w)"
                    " SELECT 'poll:rig-' || s || '-' || r || ':' || t, t, t, 'site-' || s,"
                    " 'rig-' || s || '-' || r, 'hashing', 100, 3250"
                    " FROM generate_series(1, :sites) s, generate_series(1, :rigs) r,"
                    " generate_series(:start, :start + interval '2 days' - interval '1 second',"
                    " interval '10 minutes') t"
                ),
                params,
            )
            conn.execute(
                sa.text(
                    "INSERT INTO plan_slot (rig, hour_start, desired, plan_id, created_at)"
                    " SELECT 'rig-' || s || '-' || r, :start + h * interval '1 hour', 'hashing',"
                    " 'p1', :now FROM generate_series(1, :sites) s, generate_series(1, :rigs) r,"
                    " generate_series(0, 59) h"
                ),
                params,
            )
            conn.execute(
                sa.text(
                    "INSERT INTO electricity_price (market, zone, kind, ts, price, currency,"
                    " source, inserted_at)"
                    " SELECT 'ercot', z, k, :now - h * interval '1 hour', 40, 'USD', '', :now"
                    " FROM unnest(array['LZ_WEST', 'LZ_NORTH', 'LZ_SOUTH', 'HB_HOUSTON']) z,"
                    " unnest(array['day_ahead', 'real_time', 'forecast']) k,"
                    " generate_series(0, 8759) h"
                ),
                params,
            )
            conn.execute(
                sa.text(
                    "INSERT INTO treasury_orders (client_order_id, venue, symbol, side, amount,"
                    " price, status, filled, cost, fee, created_at, updated_at)"
                    " SELECT 'c' || i, 'kraken', 'BTC/USD', 'sell', '0.01', '90000',"
                    " CASE WHEN i % 5000 = 0 THEN 'open' ELSE 'filled' END, '0', '0', '0',"
                    " :now - i * interval '5 minutes', :now FROM generate_series(1, 50000) i"
                ),
                params,
            )
            conn.execute(sa.text("ANALYZE"))
        yield engine
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_latest_telemetry_per_rig_of_a_site_reads_one_day_by_index(farm_db: sa.Engine) -> None:
    t = RigTelemetry
    query = (
        sa.select(t.rig, t.time, t.hashrate_ths, t.power_w)
        .where(t.site == "site-2", t.time >= NOW - timedelta(hours=1), t.time < NOW)
        .order_by(t.rig, t.time.desc())
        .distinct(t.rig)
    )
    scans = _explain_select(farm_db, query)
    # pruned to today's partition, and read through the (site, rig, time) index
    assert _relations(scans) == {f"rig_telemetry_p{TODAY:%Y%m%d}"}
    assert _indexed(scans), scans
    assert {s.index for s in scans if s.index} == {
        f"rig_telemetry_p{TODAY:%Y%m%d}_site_rig_time_idx"
    }


def test_daily_power_of_a_site_reads_only_that_day(farm_db: sa.Engine) -> None:
    # the query TreasuryService.electricity_cost runs for a day's sale report
    t = RigTelemetry
    day = partitions.day_start(TODAY - timedelta(days=1))
    query = (
        sa.select(t.time, sa.func.sum(t.power_w))
        .where(t.site.in_(["site-1"]), t.time >= day, t.time < day + timedelta(days=1))
        .group_by(t.time)
    )
    scans = _explain_select(farm_db, query)
    assert _relations(scans) == {f"rig_telemetry_p{TODAY - timedelta(days=1):%Y%m%d}"}


def test_plan_slots_of_a_site_for_this_hour_use_an_index(farm_db: sa.Engine) -> None:
    rigs = [RigPlace(f"rig-2-{r}", "site-2", None) for r in range(1, RIGS_PER_SITE + 1)]
    sessions = session_factory(farm_db)

    def run() -> None:
        with sessions() as session:
            states = desired_states(session, rigs, NOW)
        assert len(states) == RIGS_PER_SITE and all(d == "hashing" for d, _ in states.values())

    sent = [s for s in _captured(farm_db, run) if "plan_slot" in s[0]]
    assert len(sent) == 1
    scans = _explain(farm_db, *sent[0])
    assert _indexed(scans), scans
    assert {s.index for s in scans if s.index} <= {"ix_plan_slot_hour", "uq_plan_slot_rig_hour"}


def test_prices_of_a_zone_over_a_week_use_the_unique_index(farm_db: sa.Engine) -> None:
    def run() -> None:
        series = load_prices(
            farm_db, "ercot", "LZ_WEST", PriceKind.REAL_TIME, "UTC", NOW - timedelta(days=7), NOW
        )
        assert len(series.prices) == 7 * 24

    sent = _captured(farm_db, run)
    assert len(sent) == 1
    scans = _explain(farm_db, *sent[0])
    assert _indexed(scans) and {s.index for s in scans if s.index} == {
        "uq_electricity_price_market"
    }


def test_unfinished_orders_use_the_status_index(farm_db: sa.Engine) -> None:
    found: list[int] = []

    def run() -> None:
        found.append(len(Ledger(farm_db).unresolved_orders()))

    sent = _captured(farm_db, run)
    assert found == [10]
    scans = _explain(farm_db, *sent[0])
    assert _indexed(scans) and {s.index for s in scans if s.index} == {"ix_treasury_orders_status"}
