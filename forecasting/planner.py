"""The hashing planner: which rig group hashes in which hour, from a price forecast and hashprice.

For each group the planner solves a small dynamic programme over (on/off, hours in state,
switches used today) that maximises the hashing margin per MW, (break-even - price) in every
hashing hour, minus a cost per switch, subject to minimum on and off durations and a maximum
number of switches per local day. Operator windows force hours off, on, or under a power cap
(least efficient groups curtailed first) and override the minimum durations. Because each
group's break-even price rises with its efficiency, the least efficient group is always the
first to be curtailed when prices climb.

The price difference only counts beyond a deadband taken from the forecast interval (see
:class:`~forecasting.plan_types.PlanConstraints.deadband_scale`), and switching away from the
current state costs a hair more than staying, so uncertain hours never cause a switch.

The same :func:`schedule_group` runs in live planning (:func:`plan_hours`), in the real-time
re-plan and in the backtest (forecast margins) and for the perfect-foresight reference (actual
margins): one code path.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from forecasting.economics import break_even_price
from forecasting.plan_types import (
    GroupState,
    HashingPlan,
    OperatorWindow,
    PlanConstraints,
    PlanError,
    PlanHour,
    RigAction,
    RigActionKind,
    RigGroup,
    WindowAction,
)

logger = logging.getLogger(__name__)

FREE = -1  # forced-state code: the planner decides
FORCED_OFF = 0
FORCED_ON = 1
_TIE = 1e-9  # makes "stay" win a tie against "switch"


def _dp_kernel(
    margin: np.ndarray,
    day: np.ndarray,
    forced: np.ndarray,
    s0: int,
    d0: int,
    k0: int,
    min_on: int,
    min_off: int,
    max_sw: int,
    cost: float,
) -> np.ndarray:
    n = margin.shape[0]
    dmax = max(min_on, min_off, 1)
    kn = max_sw + 1
    neg = -1e300
    value = np.full((2, dmax + 1, kn), neg)
    value[s0, min(max(d0, 1), dmax), min(k0, max_sw)] = 0.0
    back = np.zeros((n, 2, dmax + 1, kn, 3), dtype=np.int16)
    for t in range(n):
        new_day = t > 0 and day[t] != day[t - 1]
        nxt = np.full((2, dmax + 1, kn), neg)
        f = forced[t]
        for s in range(2):
            for d in range(1, dmax + 1):
                for k in range(kn):
                    v = value[s, d, k]
                    if v <= neg:
                        continue
                    kk = 0 if new_day else k
                    for s2 in range(2):
                        if f >= 0 and s2 != f:
                            continue
                        if s2 == s:
                            d2 = min(d + 1, dmax)
                            k2 = kk
                            val = v
                        else:
                            need = min_on if s == 1 else min_off
                            if f < 0 and (d < need or kk >= max_sw):
                                continue
                            d2 = 1
                            k2 = min(kk + 1, max_sw)
                            val = v - cost - 1e-9
                        if s2 == 1:
                            val += margin[t]
                        if val > nxt[s2, d2, k2]:
                            nxt[s2, d2, k2] = val
                            back[t, s2, d2, k2, 0] = s
                            back[t, s2, d2, k2, 1] = d
                            back[t, s2, d2, k2, 2] = k
        value = nxt
    best = neg
    bs, bd, bk = 0, 1, 0
    for s in range(2):
        for d in range(1, dmax + 1):
            for k in range(kn):
                if value[s, d, k] > best:
                    best = value[s, d, k]
                    bs, bd, bk = s, d, k
    out = np.zeros(n, dtype=np.bool_)
    if best <= neg:
        out[:] = False
        return out
    s, d, k = bs, bd, bk
    for t in range(n - 1, -1, -1):
        out[t] = s == 1
        ps = back[t, s, d, k, 0]
        pd_ = back[t, s, d, k, 1]
        pk = back[t, s, d, k, 2]
        s, d, k = ps, pd_, pk
    return out


@functools.cache
def _compiled_dp_kernel() -> Callable[..., np.ndarray]:
    """The same kernel compiled by numba, loaded on first use: numba and LLVM cost ~60 MB of
    RSS, worth it for backtests that plan thousands of times, not for an hourly plan."""
    from numba import njit

    kernel: Callable[..., np.ndarray] = njit(cache=True)(_dp_kernel)
    return kernel


def schedule_group(
    margin_per_mwh: np.ndarray,
    day_index: np.ndarray,
    forced: np.ndarray,
    state: GroupState,
    constraints: PlanConstraints,
    *,
    compiled: bool = True,
) -> np.ndarray:
    """Best on/off schedule (bool per hour) of one group for hourly margins per MWh.

    ``margin_per_mwh[t]`` is what one MW hashing for hour t earns minus its power cost;
    ``day_index`` numbers local days (switch limits reset when it changes); ``forced`` holds
    -1 (free), 0 (forced off) or 1 (forced on) per hour. ``state`` is the group's state just
    before the first hour. ``compiled=False`` runs the kernel as plain Python (same function,
    same result; ~5 ms for a 48-hour group) without loading numba.
    """
    margin = np.ascontiguousarray(margin_per_mwh, dtype=np.float64)
    n = margin.shape[0]
    if day_index.shape[0] != n or forced.shape[0] != n:
        raise PlanError("margin, day index and forced arrays must have the same length")
    if n == 0:
        return np.zeros(0, dtype=bool)
    if np.isnan(margin).any():
        raise PlanError(f"margin has NaN at hour {int(np.argmax(np.isnan(margin)))}")
    kernel = _compiled_dp_kernel() if compiled else _dp_kernel
    out: np.ndarray = kernel(
        margin,
        np.ascontiguousarray(day_index, dtype=np.int64),
        np.ascontiguousarray(forced, dtype=np.int8),
        1 if state.on else 0,
        int(state.hours_in_state),
        int(state.switches_today),
        constraints.min_on_hours,
        constraints.min_off_hours,
        constraints.max_switches_per_day,
        float(constraints.switch_cost_usd_per_mw),
    )
    return out


def effective_margin(
    break_even: float,
    p10: np.ndarray,
    p50: np.ndarray,
    p90: np.ndarray,
    deadband_scale: float,
) -> np.ndarray:
    """Margin per MWh (break-even - p50) shrunk by the forecast uncertainty on the wrong side.

    Where hashing looks profitable the margin shrinks by ``scale x (p90 - p50)`` (the price
    might be that much higher); where curtailing looks right it shrinks by
    ``scale x (p50 - p10)``. Differences inside the band become 0, so they never pay a switch.
    """
    raw = break_even - p50
    if deadband_scale <= 0:
        return raw
    up = np.maximum(p90 - p50, 0.0) * deadband_scale
    down = np.maximum(p50 - p10, 0.0) * deadband_scale
    return np.where(raw > 0, np.maximum(raw - up, 0.0), np.minimum(raw + down, 0.0))


def local_day_index(hours: pd.DatetimeIndex, timezone: str) -> np.ndarray:
    """Number each hour by its local calendar day (for per-day switch limits)."""
    local = hours.tz_convert(timezone)
    days = local.normalize().tz_localize(None)
    return np.asarray((days - pd.Timestamp("1970-01-01")).days, dtype=np.int64)


def forced_states(
    hours: pd.DatetimeIndex,
    groups: Sequence[RigGroup],
    windows: Sequence[OperatorWindow],
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Per group, the forced code per hour (-1 free, 0 off, 1 on) and the window reason.

    Cap windows keep the most efficient groups that fit under the cap and curtail the rest,
    so the least efficient rigs are curtailed first. Later windows win where windows overlap.
    """
    n = len(hours)
    forced = {g.name: np.full(n, FREE, dtype=np.int8) for g in groups}
    reasons = {g.name: [""] * n for g in groups}
    by_efficiency = sorted(groups, key=lambda g: g.j_per_th)
    starts = hours.to_pydatetime()
    for window in windows:
        for t, start in enumerate(starts):
            end = start + timedelta(hours=1)
            if not (start < window.end and window.start < end):
                continue
            label = f"window:{window.reason or window.action.value}"
            if window.action is WindowAction.OFF:
                for g in groups:
                    forced[g.name][t], reasons[g.name][t] = FORCED_OFF, label
            elif window.action is WindowAction.ON:
                for g in groups:
                    forced[g.name][t], reasons[g.name][t] = FORCED_ON, label
            else:
                budget = float(window.cap_mw or 0.0)
                for g in by_efficiency:
                    if g.power_mw <= budget + 1e-12:
                        budget -= g.power_mw  # fits under the cap: economics still decides
                    else:
                        forced[g.name][t], reasons[g.name][t] = FORCED_OFF, label
    return forced, reasons


def _check_forecast(forecast: pd.DataFrame) -> pd.DatetimeIndex:
    for col in ("p10", "p50", "p90"):
        if col not in forecast.columns:
            raise PlanError(f"forecast lacks column {col!r} (has {list(forecast.columns)})")
    if forecast.empty:
        raise PlanError("forecast is empty")
    index = pd.DatetimeIndex(forecast.index)
    if index.tz is None:
        raise PlanError("forecast index must be tz-aware UTC hour starts")
    if len(index) > 1 and not ((index[1:] - index[:-1]) == pd.Timedelta(hours=1)).all():
        raise PlanError("forecast hours must be consecutive (hourly, no gaps, sorted)")
    values = forecast[["p10", "p50", "p90"]].to_numpy(dtype=float)
    if np.isnan(values).any():
        bad = index[np.isnan(values).any(axis=1)][0]
        raise PlanError(f"forecast has NaN at {bad}: fill or shorten the horizon first")
    return index.tz_convert("UTC")


def plan_hours(
    forecast: pd.DataFrame,
    hashprice_usd_per_th_day: float,
    groups: Sequence[RigGroup],
    constraints: PlanConstraints | None = None,
    windows: Sequence[OperatorWindow] = (),
    initial: Mapping[str, GroupState] | None = None,
    pool_fee: float = 0.0,
    created_at: datetime | None = None,
    *,
    compiled: bool = True,
) -> HashingPlan:
    """Plan the next hours (typically 24-48) for a fleet.

    ``forecast``: consecutive UTC hour starts as index and columns ``p10``, ``p50``, ``p90`` in
    the site's currency per MWh. ``groups``: the fleet grouped by efficiency. ``initial``: each
    group's state before the first hour (default: hashing for a day, no switches yet).
    Returns a :class:`HashingPlan` with one :class:`PlanHour` per group and hour and staggered
    :class:`RigAction` lists for every switch. ``compiled``: see :func:`schedule_group`.
    """
    cons = constraints or PlanConstraints()
    if not groups:
        raise PlanError("no rig groups to plan")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise PlanError(f"group names repeat: {names}")
    hours = _check_forecast(forecast)
    p10 = forecast["p10"].to_numpy(dtype=float)
    p50 = forecast["p50"].to_numpy(dtype=float)
    p90 = forecast["p90"].to_numpy(dtype=float)
    days = local_day_index(hours, cons.timezone)
    forced, reasons = forced_states(hours, groups, windows)
    states = dict(initial or {})
    plan_rows: list[PlanHour] = []
    schedules: dict[str, np.ndarray] = {}
    for group in groups:
        be = break_even_price(hashprice_usd_per_th_day, group.j_per_th, pool_fee)
        margin = effective_margin(be, p10, p50, p90, cons.deadband_scale)
        state = states.get(group.name, GroupState())
        on = schedule_group(margin, days, forced[group.name], state, cons, compiled=compiled)
        schedules[group.name] = on
        for t, start in enumerate(hours.to_pydatetime()):
            if reasons[group.name][t]:
                reason = reasons[group.name][t]
            elif margin[t] != 0.0 and (margin[t] > 0) == bool(on[t]):
                reason = "economics"
            else:
                reason = "hold"
            plan_rows.append(
                PlanHour(
                    start=start,
                    group=group.name,
                    hashing=bool(on[t]),
                    power_mw=group.power_mw,
                    price_p10=float(p10[t]),
                    price_p50=float(p50[t]),
                    price_p90=float(p90[t]),
                    break_even=be,
                    reason=reason,
                )
            )
    actions = stagger_actions(hours, groups, schedules, states, cons.stagger_seconds)
    plan = HashingPlan(
        created_at=created_at or datetime.now(UTC),
        hashprice_usd_per_th_day=hashprice_usd_per_th_day,
        constraints=cons,
        hours=tuple(plan_rows),
        actions=tuple(actions),
        groups=tuple(groups),
    )
    logger.info(
        "plan made hours=%d groups=%d actions=%d hashprice=%.4f",
        len(hours),
        len(groups),
        len(actions),
        hashprice_usd_per_th_day,
    )
    return plan


def stagger_actions(
    hours: pd.DatetimeIndex,
    groups: Sequence[RigGroup],
    schedules: Mapping[str, np.ndarray],
    initial: Mapping[str, GroupState],
    stagger_seconds: float,
) -> list[RigAction]:
    """Per-rig curtail/resume actions for every switch, spread ``stagger_seconds`` apart.

    In an hour where several groups switch, curtails go first (least efficient group first),
    then resumes (most efficient first), one rig after another, so fleet power ramps.
    """
    out: list[RigAction] = []
    starts = hours.to_pydatetime()
    prev = {g.name: initial.get(g.name, GroupState()).on for g in groups}
    for t, start in enumerate(starts):
        curtail = [g for g in groups if prev[g.name] and not schedules[g.name][t]]
        resume = [g for g in groups if not prev[g.name] and schedules[g.name][t]]
        curtail.sort(key=lambda g: -g.j_per_th)
        resume.sort(key=lambda g: g.j_per_th)
        slot = 0
        for kind, batch in ((RigActionKind.CURTAIL, curtail), (RigActionKind.RESUME, resume)):
            for g in batch:
                for rig in g.rigs or ("",):
                    at = start + timedelta(seconds=slot * stagger_seconds)
                    out.append(RigAction(at=at, group=g.name, rig=rig, kind=kind))
                    slot += 1
        for g in groups:
            prev[g.name] = bool(schedules[g.name][t])
    return out
