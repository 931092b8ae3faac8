"""Plan backtest on a real LZ_WEST slice: invariants, constraints, and no look-ahead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.ercot import ERCOT_TZ, ercot_file, load_ercot_hourly
from forecasting.plan_backtest import (
    BacktestCase,
    da_known_until,
    plan_schedule,
    run_backtest,
    score_schedule,
    segments,
)
from forecasting.plan_types import GroupState, PlanConstraints
from forecasting.planner import local_day_index, schedule_group
from forecasting.rt_forecast import RtForecaster, walk_forward

START = pd.Timestamp("2024-08-01", tz=ERCOT_TZ).tz_convert("UTC")
CONS = PlanConstraints(switch_cost_usd_per_mw=10.0, deadband_scale=0.25, timezone=ERCOT_TZ)
CASES = [BacktestCase(17.5, 0.05), BacktestCase(25.0, 0.04)]


@pytest.fixture(scope="module")
def summer(data_dir: Path) -> pd.DataFrame:
    """LZ_WEST, June-August 2024 (real prices, includes the 3,028 USD/MWh spike of 20 Aug)."""
    frame = load_ercot_hourly(ercot_file(data_dir), "LZ_WEST").frame()
    return frame.loc["2024-06-01 05:00":"2024-09-01 04:00"]


def _fast() -> RtForecaster:
    return RtForecaster(max_iter=40)


@pytest.fixture(scope="module")
def forecast(summer: pd.DataFrame) -> pd.DataFrame:
    return walk_forward(summer["da"], summer["rt"], START, ERCOT_TZ, _fast(), refit_months=1)


def test_invariants_on_real_slice(summer: pd.DataFrame, forecast: pd.DataFrame) -> None:
    results = run_backtest(summer, forecast, CASES, CONS, "LZ_WEST")
    for r in results:
        assert r.hours_scored == 31 * 24 and r.hours_skipped == 0
        assert r.perfect_margin >= r.plan_margin
        assert r.perfect_margin > r.always_on_margin
        assert r.capture <= 1.0
        assert r.plan_hours_curtailed > 0 and r.perfect_hours_curtailed > 0
        assert r.plan_cost_avoided > 0
    r17 = results[0]
    assert r17.break_even_usd_per_mwh == pytest.approx(119.0476, rel=1e-5)
    # always-on margin = sum(break-even - RT) over August, from the real prices
    aug = summer.loc[START:, "rt"]
    assert r17.always_on_margin == pytest.approx(float((119.047619 - aug).sum()), rel=1e-6)
    # the plan earns most of what perfect foresight adds on this month
    assert r17.capture > 0.5


def test_perfect_foresight_without_constraints_is_closed_form(summer: pd.DataFrame) -> None:
    rt = summer["rt"].to_numpy()
    be = 119.047619
    days = local_day_index(pd.DatetimeIndex(summer.index), ERCOT_TZ)
    free = PlanConstraints(max_switches_per_day=48)
    on = schedule_group(be - rt, days, np.full(len(rt), -1, np.int8), GroupState(), free)
    assert np.array_equal(on, rt <= be)  # hash exactly when the price is at most break-even
    strict = PlanConstraints(min_off_hours=3, min_on_hours=3, switch_cost_usd_per_mw=20.0)
    on3 = schedule_group(be - rt, days, np.full(len(rt), -1, np.int8), GroupState(), strict)
    pieces = "".join("1" if x else "0" for x in on3).replace("10", "1|0").replace("01", "0|1")
    assert all(len(p) >= 3 for p in pieces.split("|")[1:-1])
    gain_free = float(((be - rt) * on).sum())
    gain_strict = float(((be - rt) * on3).sum()) - 20.0 * int((on3 != np.r_[True, on3[:-1]]).sum())
    assert gain_free > gain_strict > float((be - rt).sum())


def test_score_counts_switch_costs(summer: pd.DataFrame, forecast: pd.DataFrame) -> None:
    sched = plan_schedule(summer, forecast, CASES[0], CONS)
    r = score_schedule(sched, CASES[0], CONS, "LZ_WEST")
    valid = sched["valid"].to_numpy()
    m = np.where(valid, sched.attrs["break_even"] - sched["rt"].to_numpy(), 0.0)
    on = sched["plan_on"].to_numpy()
    expected = float((m * on).sum()) - 10.0 * r.plan_switches
    assert r.plan_margin == pytest.approx(expected)
    assert r.plan_switches == int((on != np.r_[True, on[:-1]]).sum())


def test_no_look_ahead(summer: pd.DataFrame, forecast: pd.DataFrame) -> None:
    """Decisions before hour k are identical when every price not yet known at k changes."""
    case = CASES[0]
    base = plan_schedule(summer, forecast, case, CONS)
    hours = pd.DatetimeIndex(summer.index)
    k = int(hours.searchsorted(pd.Timestamp("2024-08-15 17:00", tz="UTC")))
    known = da_known_until(hours, ERCOT_TZ)[k]
    changed = summer.copy()
    changed.iloc[k:, changed.columns.get_loc("rt")] += 400.0
    changed.iloc[known:, changed.columns.get_loc("da")] += 400.0
    fc2 = walk_forward(changed["da"], changed["rt"], START, ERCOT_TZ, _fast(), refit_months=1)
    other = plan_schedule(changed, fc2, case, CONS)
    cut = int(pd.DatetimeIndex(base.index).searchsorted(hours[k]))
    assert np.array_equal(base["plan_on"].to_numpy()[:cut], other["plan_on"].to_numpy()[:cut])
    assert np.allclose(base[["p10", "p50", "p90"]].to_numpy()[:cut],
                       fc2[["p10", "p50", "p90"]].to_numpy()[:cut])  # fmt: skip
    # the change is visible right after k, so the comparison above can fail
    assert not np.array_equal(base["plan_on"].to_numpy()[cut:], other["plan_on"].to_numpy()[cut:])


def test_da_publication_horizon() -> None:
    hours = pd.date_range("2024-08-01 05:00", periods=72, freq="h", tz="UTC")  # CDT midnights
    known = da_known_until(hours, ERCOT_TZ)
    assert known[0] == 24  # at 00:00 local only today's DA is known
    assert known[13] == 24  # 13:00 local: tomorrow's results not posted yet
    assert known[14] == 48  # 14:00 local: tomorrow known
    assert segments(np.array([True, True, False, True])) == [(0, 2), (3, 4)]


def test_gaps_split_segments_and_are_counted(summer: pd.DataFrame, forecast: pd.DataFrame) -> None:
    holed = summer.copy()
    holed.loc["2024-08-10 00:00":"2024-08-10 05:00", "rt"] = np.nan
    r = run_backtest(holed, forecast, CASES[:1], CONS)[0]
    assert r.hours_skipped == 6 and r.hours_scored == 31 * 24 - 6


@pytest.mark.slow
@pytest.mark.parametrize("zone", ["LZ_WEST", "HB_WEST"])
def test_full_series_capture_target(data_dir: Path, zone: str) -> None:
    """Issue 5 target: at least 80 % of the perfect-foresight uplift, 2024-04 .. 2026-03."""
    from forecasting.plan_backtest import backtest_prices

    frame = load_ercot_hourly(ercot_file(data_dir), zone).frame()
    start = pd.Timestamp("2024-04-01", tz=ERCOT_TZ).tz_convert("UTC")
    cases = [BacktestCase(j, h) for j in (17.5, 25.0) for h in (0.04, 0.05)]
    results, _ = backtest_prices(frame, cases, CONS, start, zone=zone)
    for r in results:
        assert r.hours_scored == 16_817
        assert r.capture >= 0.80, (r.j_per_th, r.hashprice_usd_per_th_day, r.capture)


def test_day_ahead_horizon_spans_the_25_hour_autumn_day() -> None:
    """On 2024-11-03 (25 hours in Texas) the published day-ahead horizon still ends at local
    midnight: before 14:00 the same day's end, after 14:00 the next day's end."""
    from forecasting.plan_backtest import da_known_until

    hours = pd.date_range("2024-11-02 05:00", periods=80, freq="h", tz="UTC")
    known = da_known_until(hours, "America/Chicago")
    at = {str(h): hours[k] if k < len(hours) else None for h, k in zip(hours, known, strict=True)}
    # 15:00 CDT on Nov 2: Nov 3 (25 h) is published, ending at Nov 4 00:00 CST = 06:00 UTC.
    assert at["2024-11-02 20:00:00+00:00"] == pd.Timestamp("2024-11-04 06:00", tz="UTC")
    # 00:00 CDT on Nov 3 (before 14:00): the same 25-hour day.
    assert at["2024-11-03 05:00:00+00:00"] == pd.Timestamp("2024-11-04 06:00", tz="UTC")
    # 14:00 CST on Nov 3: Nov 4 is out too.
    assert at["2024-11-03 20:00:00+00:00"] is None or at[
        "2024-11-03 20:00:00+00:00"
    ] > pd.Timestamp("2024-11-04 06:00", tz="UTC")
