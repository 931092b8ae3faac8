"""Price ingest into the store (ERCOT public API served locally, CSV), the stored feed, and the
daemon re-planning when new prices arrive."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from controller import migrate
from controller.clock import AcceleratedClock
from controller.config import parse_config
from controller.daemon import serve
from controller.gateway import Gateway
from controller.planning import detach_planning
from controller.prices_service import (
    StoredPriceFeed,
    attach_site_planning,
    hourly_energy_price,
    ingest_prices,
)
from controller.storage import make_engine
from controller.tables import JobRun, PlanSlot
from tests.forecasting.test_ercot import _Api
from tests.forecasting.test_ercot import api_server as api_server  # fixture


def test_ingest_from_the_ercot_api_and_read_back(
    tmp_path: Path, api_server: tuple[str, _Api]
) -> None:
    base, state = api_server
    url = f"sqlite:///{tmp_path / 'p.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    config = parse_config(
        {
            "sites": [{"id": "west", "timezone": "America/Chicago"}],
            "electricity": {"market": "ercot", "zone": "LZ_WEST", "api_url": base},
        },
        tmp_path / "farm.toml",
    )
    now = datetime(2024, 11, 3, 18, 30, tzinfo=UTC)
    written = ingest_prices(engine, config.electricity, now, tmp_path, "America/Chicago")
    assert written == 25 + 2  # the 25-hour day-ahead day and two complete real-time hours
    assert {path.rsplit("/", 2)[-2] for path, _, _ in state.requests} == {
        "np4-190-cd",
        "np6-905-cd",
    }
    # Stored again: an upsert, not duplicates.
    assert ingest_prices(engine, config.electricity, now, tmp_path, "America/Chicago") == written
    feed = StoredPriceFeed(engine, "ERCOT", "LZ_WEST", "America/Chicago")
    known = feed.known(now)
    assert known.loc[pd.Timestamp("2024-11-03 05:00", tz="UTC"), "rt"] == pytest.approx(35.6625)
    assert known["da"].notna().sum() == 25
    # The sale reports' electricity cost prices each hour as the site pays it.
    rt_site = config.electricity.model_copy(update={"adder_per_mwh": 5.0})
    price = hourly_energy_price(engine, rt_site, "America/Chicago")
    assert price(datetime(2024, 11, 3, 5, tzinfo=UTC)) == pytest.approx(35.6625 + 5.0)
    assert price(datetime(2024, 11, 3, 6, tzinfo=UTC)) is None  # a real-time gap stays unknown
    da_site = config.electricity.model_copy(update={"tariff": "day_ahead"})
    assert hourly_energy_price(engine, da_site, "America/Chicago")(
        datetime(2024, 11, 3, 7, tzinfo=UTC)
    ) == pytest.approx(float(known.loc[pd.Timestamp("2024-11-03 07:00", tz="UTC"), "da"]))
    fixed = config.electricity.model_copy(update={"tariff": "fixed", "fixed_price_per_mwh": 42.0})
    assert hourly_energy_price(engine, fixed, "America/Chicago")(now) == 42.0
    engine.dispose()


def _csv(path: Path, start: datetime, hours: int) -> None:
    stamps = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    local = stamps.tz_convert("Europe/Berlin")
    prices = 60 + 40 * np.sin(np.arange(hours) / 24 * 2 * np.pi)
    pd.DataFrame({"timestamp": [t.isoformat() for t in local], "price": prices.round(2)}).to_csv(
        path, index=False
    )


async def test_daemon_ingests_prices_and_replans_at_once(tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    _csv(tmp_path / "prices.csv", start, 24 * 4)
    raw = {
        "farm": {"name": "csvfarm", "data_dir": str(tmp_path / "var")},
        "sites": [{"id": "de", "timezone": "Europe/Berlin"}],
        "rigs": [
            {"name": "s19-1", "site": "de", "address": "127.0.0.1:1", "model": "Antminer S19"},
            {"name": "s21-1", "site": "de", "address": "127.0.0.1:2", "model": "Antminer S21"},
        ],
        "electricity": {
            "market": "csv",
            "zone": "DE",
            "tariff": "day_ahead",
            "prices_csv": "prices.csv",
            "currency": "EUR",
        },
        "planner": {"hashprice_usd_per_th_day": 0.045},
        "scheduler": {"price_ingest_interval_s": 3600, "replan_interval_s": 3600},
        "metrics": {"enabled": False},
    }
    config = parse_config(raw, tmp_path / "farm.toml")
    gateway = Gateway(config, base_dir=tmp_path, clock=AcceleratedClock(datetime.now(UTC), 1.0))
    attach_site_planning(gateway)
    stop = asyncio.Event()

    async def stop_soon(_: Gateway) -> None:
        asyncio.get_running_loop().call_later(3.0, stop.set)

    try:
        await serve(config, base_dir=tmp_path, stop=stop, gateway=gateway, on_started=stop_soon)
    finally:
        detach_planning()
    engine = make_engine(gateway.database_url)
    from controller.storage import session_factory

    with session_factory(engine)() as session:
        jobs = dict(
            session.execute(select(JobRun.job, func.count()).group_by(JobRun.job)).tuples().all()
        )
        slots = session.scalar(select(func.count()).select_from(PlanSlot))
        first = session.scalars(select(PlanSlot).order_by(PlanSlot.hour_start)).first()
    assert jobs.get("prices") == 1
    # The plan came from the price job itself (the hourly replan had not fired yet).
    assert "replan" not in jobs
    assert slots and slots % 2 == 0  # both rigs planned for the same hours
    assert first is not None
    engine.dispose()
