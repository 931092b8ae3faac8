"""Plan backtest: always-on vs our real-time plan vs the perfect-foresight plan, same constraints.

All three are scored on the real-time price (what a site on real-time prices pays), per MW of
fleet, at a fixed hashprice:

* **always-on** hashes every hour: margin = sum(break-even - RT price);
* **our plan** re-plans every hour h with :func:`forecasting.planner.schedule_group` on a
  forecast built only from information available before h: real-time hourly prices up to h-1,
  the day-ahead prices published so far (ERCOT's DAM posts at about 13:30 local the day before,
  so before 14:00 local the horizon ends at midnight, after it at the next midnight). Only the
  decision for h is committed; the forecaster is refit (every 3 months by default) on earlier hours only;
* **perfect foresight** runs the same dynamic programme on the actual real-time prices.

Capture = (plan - always-on) / (perfect - always-on). Hours where the real-time or day-ahead
price is missing split the series into segments; each segment starts hashing with a fresh
switch budget, and the missing hours are counted, never filled.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from forecasting.economics import break_even_price
from forecasting.plan_types import GroupState, PlanConstraints, PlanError
from forecasting.planner import effective_margin, local_day_index, schedule_group
from forecasting.rt_forecast import horizon_arrays

logger = logging.getLogger(__name__)

DA_PUBLISH_LOCAL_HOUR = 14  # ERCOT DAM results post around 13:30 local the day before delivery

INFORMATION = (
    "decision for hour h uses: real-time hourly prices up to h-1 (the hourly average of h-1 is "
    "complete a few minutes into h, when its last 15-minute interval posts), day-ahead prices "
    "published before h (next day's after 14:00 local), and a forecaster refit (default every 3 "
    "months) on earlier hours only; never the real-time price of h or later"
)
INFORMATION_DAY_AHEAD = (
    "day-ahead tariff: the price of hour h is published the day before (14:00 local), so the "
    "plan knows it; only the planning horizon (prices published so far) and the constraints "
    "separate it from perfect foresight"
)


@dataclass(frozen=True)
class BacktestCase:
    """One fleet/hashprice combination to score."""

    j_per_th: float
    hashprice_usd_per_th_day: float


@dataclass(frozen=True)
class BacktestResult:
    """Scores of one case on one price series, per MW of fleet (USD)."""

    zone: str
    j_per_th: float
    hashprice_usd_per_th_day: float
    break_even_usd_per_mwh: float
    start: str
    end: str
    hours_scored: int
    hours_skipped: int
    always_on_margin: float
    plan_margin: float
    perfect_margin: float
    capture: float
    plan_hours_curtailed: int
    perfect_hours_curtailed: int
    plan_cost_avoided: float
    perfect_cost_avoided: float
    plan_switches: int
    perfect_switches: int

    def as_dict(self) -> dict[str, object]:
        """Plain dict (for --json)."""
        return asdict(self)


def da_known_until(hours: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    """For each hour h, the position (exclusive) of the last day-ahead hour published before h."""
    local = hours.tz_convert(timezone)
    day_start = local.normalize()
    plus_days = np.where(local.hour >= DA_PUBLISH_LOCAL_HOUR, 2, 1)
    # Calendar days (DateOffset), not 24-hour steps: on the 25-hour autumn day a 24-hour step
    # lands at 23:00 of the same day and normalizing it would lose the whole next day.
    ends = [
        (d + pd.DateOffset(days=int(k))).tz_convert("UTC")
        for d, k in zip(day_start, plus_days, strict=True)
    ]
    positions = hours.searchsorted(pd.DatetimeIndex(ends), side="left")
    return np.asarray(positions, dtype=np.int64)


def segments(valid: np.ndarray) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of True."""
    out: list[tuple[int, int]] = []
    start = -1
    for i, ok in enumerate(valid):
        if ok and start < 0:
            start = i
        elif not ok and start >= 0:
            out.append((start, i))
            start = -1
    if start >= 0:
        out.append((start, len(valid)))
    return out


def _advance(state: GroupState, on: bool) -> GroupState:
    """The group's state after one more hour in ``on``."""
    if on == state.on:
        return GroupState(on, min(state.hours_in_state + 1, 48), state.switches_today)
    return GroupState(on, 1, state.switches_today + 1)


def rolling_plan(
    forecast: np.ndarray,
    da: np.ndarray,
    known_until: np.ndarray,
    day: np.ndarray,
    start: int,
    end: int,
    break_even: float,
    constraints: PlanConstraints,
    half_life_hours: float = 1.0,
) -> np.ndarray:
    """Our plan's on/off decision for hours start..end-1, re-planned every hour.

    ``forecast`` has shape (n, 3): the one-step p10/p50/p90 for each hour, made before it.
    """
    state = GroupState()
    decisions = np.zeros(end - start, dtype=bool)
    free = np.full(48, -1, dtype=np.int8)
    for h in range(start, end):
        horizon_end = int(min(max(known_until[h], h + 1), end, h + 48))
        new_day = h > start and day[h] != day[h - 1]
        if new_day:
            state = GroupState(state.on, state.hours_in_state, 0)
        arr = horizon_arrays(forecast[h], da[h:horizon_end], half_life_hours)
        margin = effective_margin(break_even, arr[0], arr[1], arr[2], constraints.deadband_scale)
        n = horizon_end - h
        sched = schedule_group(margin, day[h:horizon_end], free[:n], state, constraints)
        on = bool(sched[0])
        decisions[h - start] = on
        state = _advance(state, on)
    return decisions


def _switches(on: np.ndarray) -> int:
    prev = np.r_[True, on[:-1]]
    return int((on != prev).sum())


def run_backtest(
    frame: pd.DataFrame,
    forecast: pd.DataFrame,
    cases: Sequence[BacktestCase],
    constraints: PlanConstraints,
    zone: str = "",
    pool_fee: float = 0.0,
    half_life_hours: float = 1.0,
) -> list[BacktestResult]:
    """Score every case on ``frame`` (columns ``da``, ``rt`` on an hourly UTC grid) over the
    hours of ``forecast`` (one-step p10/p50/p90 made before each hour, e.g. by
    :func:`forecasting.rt_forecast.walk_forward`)."""
    if not {"da", "rt"} <= set(frame.columns):
        raise PlanError(f"price frame needs columns da and rt, has {list(frame.columns)}")
    if len(forecast.index) == 0:
        raise PlanError("forecast covers no hours")
    results = []
    for case in cases:
        sched = plan_schedule(frame, forecast, case, constraints, pool_fee, half_life_hours)
        results.append(score_schedule(sched, case, constraints, zone))
    return results


def score_schedule(
    sched: pd.DataFrame, case: BacktestCase, constraints: PlanConstraints, zone: str = ""
) -> BacktestResult:
    """Margins, capture, curtailed hours and cost avoided of a :func:`plan_schedule` table."""
    hours = pd.DatetimeIndex(sched.index)
    be = float(sched.attrs["break_even"])
    valid = sched["valid"].to_numpy(dtype=bool)
    rt = sched["rt"].to_numpy(dtype=float)
    plan_on = sched["plan_on"].to_numpy(dtype=bool)
    perfect_on = sched["perfect_on"].to_numpy(dtype=bool)
    plan_sw = perfect_sw = 0
    for a, b in segments(valid):
        plan_sw += _switches(plan_on[a:b])
        perfect_sw += _switches(perfect_on[a:b])
    m = np.where(valid, be - rt, 0.0)
    cost = constraints.switch_cost_usd_per_mw
    always = float(m.sum())
    plan_margin = float((m * plan_on).sum()) - cost * plan_sw
    perfect_margin = float((m * perfect_on).sum()) - cost * perfect_sw
    uplift = perfect_margin - always
    capture = (plan_margin - always) / uplift if uplift > 0 else float("nan")
    rt_valid = np.where(valid, rt, 0.0)
    result = BacktestResult(
        zone=zone,
        j_per_th=case.j_per_th,
        hashprice_usd_per_th_day=case.hashprice_usd_per_th_day,
        break_even_usd_per_mwh=be,
        start=str(hours[0]),
        end=str(hours[-1]),
        hours_scored=int(valid.sum()),
        hours_skipped=int((~valid).sum()),
        always_on_margin=always,
        plan_margin=plan_margin,
        perfect_margin=perfect_margin,
        capture=capture,
        plan_hours_curtailed=int((valid & ~plan_on).sum()),
        perfect_hours_curtailed=int((valid & ~perfect_on).sum()),
        plan_cost_avoided=float((rt_valid * (valid & ~plan_on)).sum()),
        perfect_cost_avoided=float((rt_valid * (valid & ~perfect_on)).sum()),
        plan_switches=plan_sw,
        perfect_switches=perfect_sw,
    )
    logger.info(
        "plan backtest zone=%s jth=%.1f hashprice=%.3f capture=%.3f plan=%.0f perfect=%.0f",
        zone,
        case.j_per_th,
        case.hashprice_usd_per_th_day,
        capture,
        plan_margin,
        perfect_margin,
    )
    return result


def plan_schedule(
    frame: pd.DataFrame,
    forecast: pd.DataFrame,
    case: BacktestCase,
    constraints: PlanConstraints,
    pool_fee: float = 0.0,
    half_life_hours: float = 1.0,
) -> pd.DataFrame:
    """Hour-by-hour decisions of our plan and of perfect foresight (for plots and tests).

    Columns: da, rt, p10, p50, p90, plan_on, perfect_on, valid.
    """
    hours = pd.DatetimeIndex(forecast.index)
    sub = frame.reindex(hours)
    da = sub["da"].to_numpy(dtype=float)
    rt = sub["rt"].to_numpy(dtype=float)
    fc = forecast[["p10", "p50", "p90"]].to_numpy(dtype=float)
    valid = ~np.isnan(da) & ~np.isnan(rt) & ~np.isnan(fc).any(axis=1)
    day = local_day_index(hours, constraints.timezone)
    known = da_known_until(hours, constraints.timezone)
    be = break_even_price(case.hashprice_usd_per_th_day, case.j_per_th, pool_fee)
    plan_on = np.ones(len(hours), dtype=bool)
    perfect_on = np.ones(len(hours), dtype=bool)
    for a, b in segments(valid):
        plan_on[a:b] = rolling_plan(fc, da, known, day, a, b, be, constraints, half_life_hours)
        free = np.full(b - a, -1, dtype=np.int8)
        perfect_on[a:b] = schedule_group(be - rt[a:b], day[a:b], free, GroupState(), constraints)
    out = pd.DataFrame(
        {
            "da": da,
            "rt": rt,
            "p10": fc[:, 0],
            "p50": fc[:, 1],
            "p90": fc[:, 2],
            "plan_on": plan_on,
            "perfect_on": perfect_on,
            "valid": valid,
        },
        index=hours,
    )
    out.attrs["break_even"] = be
    return out


def known_price_forecast(frame: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """Forecast for a site on day-ahead prices: the price is published, so p10 = p50 = p90 = it.

    ``frame['rt']`` holds the price the site pays, ``frame['da']`` the same published price.
    """
    sub = frame.loc[frame.index >= start]
    price = sub["da"].to_numpy(dtype=float)
    return pd.DataFrame({"p10": price, "p50": price, "p90": price}, index=sub.index)


def backtest_prices(
    frame: pd.DataFrame,
    cases: Sequence[BacktestCase],
    constraints: PlanConstraints,
    start: pd.Timestamp,
    end: pd.Timestamp | None = None,
    zone: str = "",
    refit_months: int = 3,
    real_time: bool = True,
) -> tuple[list[BacktestResult], pd.DataFrame]:
    """Forecast (walk-forward from ``start``) and score every case; returns results + forecast.

    ``real_time=False`` is for sites that pay a published day-ahead price (``rt`` = ``da``).
    """
    from forecasting.rt_forecast import walk_forward

    data = frame if end is None else frame.loc[frame.index < end]
    if real_time:
        forecast = walk_forward(
            data["da"], data["rt"], start, constraints.timezone, refit_months=refit_months
        )
    else:
        forecast = known_price_forecast(data, start)
    return run_backtest(data, forecast, cases, constraints, zone), forecast


def baseline_forecasts(frame: pd.DataFrame, hours: pd.DatetimeIndex) -> dict[str, pd.DataFrame]:
    """Simple reference forecasts on ``hours``, scored through the same rolling planner:

    * ``day_ahead``: the hour's day-ahead price;
    * ``last_real_time``: the previous hour's real-time price (day-ahead when it is missing).
    Both have no spread, so the deadband does nothing for them.
    """
    sub = frame.reindex(hours)
    da = sub["da"].to_numpy(dtype=float)
    prev_rt = frame["rt"].shift(1).reindex(hours).to_numpy(dtype=float)
    last = np.where(np.isnan(prev_rt), da, prev_rt)
    out = {}
    for name, values in (("day_ahead", da), ("last_real_time", last)):
        out[name] = pd.DataFrame({"p10": values, "p50": values, "p90": values}, index=hours)
    return out
