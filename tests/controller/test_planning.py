"""Planning: the fleet grouped by efficiency, a forecast from known prices only, a stored plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from controller import migrate
from controller.config import parse_config
from controller.planning import PlanService, fleet_groups, known_slice, synthetic_feed
from controller.storage import make_engine, session_factory
from controller.tables import PlanSlot

START = datetime(2025, 7, 1, tzinfo=UTC)


def _config(tmp_path: Path, **planner: object):  # type: ignore[no-untyped-def]
    raw = {
        "farm": {"data_dir": str(tmp_path)},
        "sites": [{"id": "west", "timezone": "America/Chicago"}],
        "rigs": [
            {"name": "old-1", "site": "west", "address": "127.0.0.1:1", "model": "Antminer S19"},
            {"name": "old-2", "site": "west", "address": "127.0.0.1:2", "model": "Antminer S19"},
            {"name": "new-1", "site": "west", "address": "127.0.0.1:3", "model": "Antminer S21 XP"},
            {"name": "mystery", "site": "west", "address": "127.0.0.1:4", "model": "Antminer S99"},
        ],
        "planner": {"min_on_hours": 1, "min_off_hours": 1, "switch_cost_usd_per_mw": 0.0} | planner,
    }
    return parse_config(raw, tmp_path / "farm.toml")


def test_fleet_groups_by_efficiency_least_efficient_first(tmp_path: Path) -> None:
    groups = fleet_groups(_config(tmp_path).rigs)
    assert [(g.name, g.rigs) for g in groups] == [
        ("34J/TH", ("old-1", "old-2")),
        ("13.5J/TH", ("new-1",)),
    ]
    assert groups[0].power_mw == pytest.approx(2 * 3250 / 1e6)


def test_known_slice_has_no_look_ahead() -> None:
    feed = synthetic_feed(START, days=4)
    # 10:00 in Chicago: tomorrow's day-ahead prices are not yet published.
    now = datetime(2025, 7, 2, 15, 20, tzinfo=UTC)
    known = known_slice(feed.frame, now, "America/Chicago")
    assert known.index[-1] == pd.Timestamp("2025-07-03 04:00", tz="UTC")  # local midnight - 1 h
    assert np.isnan(known.loc["2025-07-02 15:00+00:00", "rt"])
    assert not np.isnan(known.loc["2025-07-02 14:00+00:00", "rt"])
    # 15:00 in Chicago: tomorrow's prices are out.
    later = known_slice(feed.frame, datetime(2025, 7, 2, 20, 0, tzinfo=UTC), "America/Chicago")
    assert later.index[-1] == pd.Timestamp("2025-07-04 04:00", tz="UTC")


def test_replan_stores_a_plan_that_curtails_the_least_efficient_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'farm.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    config = _config(tmp_path, deadband_scale=0.0, max_switches_per_day=48)
    feed = synthetic_feed(START, days=30)
    service = PlanService(config, feed, sessions)
    now = START + timedelta(days=20, hours=3, minutes=10)
    # Put the S19s' break-even at the median expected price, so the plan must split the hours.
    median = float(service.forecast(now)["p50"].median())
    service.hashprice = median * 34 * 24 / 1e6
    plan = service.replan(now, config.rigs)
    with sessions() as session:
        slots = session.scalars(select(PlanSlot).order_by(PlanSlot.hour_start, PlanSlot.rig)).all()
    hours = sorted({s.hour_start for s in slots})
    assert len(hours) == len(service.last_forecast)  # type: ignore[arg-type]
    assert {s.rig for s in slots} == {"old-1", "old-2", "new-1"}  # "mystery" is not planned
    by_hour = {}
    for slot in slots:
        by_hour.setdefault(slot.hour_start, {})[slot.rig] = slot.desired
    for desired in by_hour.values():
        # Never the efficient rig off while the inefficient ones hash.
        assert not (desired["new-1"] == "curtailed" and desired["old-1"] == "hashing")
        assert desired["old-1"] == desired["old-2"]
    forecast = service.last_forecast
    assert forecast is not None
    # No switch cost, no deadband, no switch budget: the S19s hash exactly when the expected
    # price is under their break-even, and the S21 XP (break-even far higher) always hashes.
    break_even = {h.group: h.break_even for h in plan.hours}
    assert break_even["34J/TH"] == pytest.approx(median)
    assert break_even["13.5J/TH"] == pytest.approx(median * 34 / 13.5)
    for hour, row in forecast.iterrows():
        desired = by_hour[hour.to_pydatetime().replace(tzinfo=None)]
        want = "hashing" if row["p50"] < break_even["34J/TH"] else "curtailed"
        assert desired["old-1"] == want, hour
        assert desired["new-1"] == "hashing"
    assert {"hashing", "curtailed"} <= {d["old-1"] for d in by_hour.values()}
    assert plan.hashprice_usd_per_th_day == service.hashprice
    # Re-planning an hour later replaces the future slots, keeps the past ones.
    service.replan(now + timedelta(hours=1), config.rigs)
    with sessions() as session:
        first_hour = session.scalars(
            select(PlanSlot).where(PlanSlot.rig == "old-1").order_by(PlanSlot.hour_start)
        ).first()
    assert first_hour is not None and first_hour.plan_id == now.strftime("%Y%m%dT%H%M%S")
    engine.dispose()


def test_replan_on_real_ercot_prices(tmp_path: Path, data_dir: Path) -> None:
    from controller.planning import ercot_feed

    url = f"sqlite:///{tmp_path / 'farm.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    config = _config(tmp_path)
    feed = ercot_feed(data_dir, "LZ_WEST")
    service = PlanService(config, feed, session_factory(engine), hashprice=0.05)
    now = datetime(2025, 8, 20, 19, 5, tzinfo=UTC)  # 14:05 in Texas: tomorrow's DA is published
    plan = service.replan(now, config.rigs)
    forecast = service.last_forecast
    assert forecast is not None
    assert forecast.index[0] == pd.Timestamp("2025-08-20 19:00", tz="UTC")
    assert forecast.index[-1] == pd.Timestamp(
        "2025-08-22 04:00", tz="UTC"
    )  # end of tomorrow, local
    assert (forecast["p10"] <= forecast["p50"]).all() and (forecast["p50"] <= forecast["p90"]).all()
    assert {h.group for h in plan.hours} == {"34J/TH", "13.5J/TH"}
    engine.dispose()
