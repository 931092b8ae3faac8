"""Planner: each constraint on its own, operator windows, efficiency order, staggering."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.ercot import ercot_file, load_ercot_hourly
from forecasting.plan_types import (
    GroupState,
    OperatorWindow,
    PlanConstraints,
    PlanError,
    RigActionKind,
    RigGroup,
    WindowAction,
)
from forecasting.planner import effective_margin, local_day_index, plan_hours, schedule_group

TZ = "America/Chicago"
HASHPRICE = 0.05  # break-even: 17.5 J/TH -> 119.05, 25 J/TH -> 83.33, 34 J/TH -> 61.27 USD/MWh
OLD = RigGroup("s19", 34.0, 2.0, ("s19-a", "s19-b"))
MID = RigGroup("s19xp", 25.0, 1.5, ("xp-a",))
NEW = RigGroup("s21", 17.5, 3.0, ("s21-a", "s21-b", "s21-c"))


def _forecast(p50: np.ndarray, start: str = "2024-08-20 05:00") -> pd.DataFrame:
    hours = pd.date_range(start, periods=len(p50), freq="h", tz="UTC")
    return pd.DataFrame({"p10": p50 * 0.8, "p50": p50, "p90": p50 * 1.25}, index=hours)


@pytest.fixture(scope="module")
def spike_day(data_dir: Path) -> pd.DataFrame:
    """Real LZ_WEST day-ahead prices of 2024-08-20 (local day, CDT) as the p50 forecast."""
    frame = load_ercot_hourly(ercot_file(data_dir), "LZ_WEST").frame()
    day = frame.loc["2024-08-20 05:00":"2024-08-21 04:00", "da"].to_numpy()
    assert day[19] == pytest.approx(673.32)  # 19:00 CDT, the evening peak
    return _forecast(day)


def _sched(plan, group: RigGroup) -> str:  # type: ignore[no-untyped-def]
    return "".join("1" if on else "0" for on in plan.group_schedule(group.name))


def test_least_efficient_curtailed_first_on_real_day(spike_day: pd.DataFrame) -> None:
    plan = plan_hours(spike_day, HASHPRICE, [NEW, MID, OLD], PlanConstraints(timezone=TZ))
    off = {g.name: 24 - sum(plan.group_schedule(g.name)) for g in (OLD, MID, NEW)}
    # DA 18:00..20:00 CDT = 201.9, 673.3, 317.4, all above every break-even; 88.5 at 21:00 is
    # above the S19 and S19 XP break-evens only; 67.9-71.0 at 15:00-17:00 only above the S19's
    assert off == {"s19": 7, "s19xp": 4, "s21": 3}
    for t in range(24):
        on = {g.name: plan.group_schedule(g.name)[t] for g in (OLD, MID, NEW)}
        assert on["s21"] >= on["s19xp"] >= on["s19"]  # never a better rig off while a worse hashes


def test_min_on_and_off_durations() -> None:
    p50 = np.array([50, 200, 50, 50, 200, 50, 50, 50, 200, 200, 50, 50], dtype=float)
    cons = PlanConstraints(min_off_hours=3, min_on_hours=2, timezone=TZ)
    plan = plan_hours(_forecast(p50), HASHPRICE, [NEW], cons)
    s = _sched(plan, NEW)
    pieces = s.replace("10", "1|0").replace("01", "0|1").split("|")
    # the first run continues the initial state (hashing for a day), the last is cut by the end
    for piece in pieces[1:-1]:
        assert len(piece) >= (3 if piece[0] == "0" else 2), s
    assert s == "100001110001"
    unconstrained = _sched(plan_hours(_forecast(p50), HASHPRICE, [NEW]), NEW)
    assert unconstrained == "101101110011"
    assert s != unconstrained


def test_max_switches_per_day() -> None:
    p50 = np.tile([50.0, 300.0], 12)  # a spike every other hour: 24 switches wanted
    unlimited = PlanConstraints(max_switches_per_day=48, timezone=TZ)
    free = _sched(plan_hours(_forecast(p50), HASHPRICE, [NEW], unlimited), NEW)
    assert free.count("0") == 12
    cons = PlanConstraints(max_switches_per_day=4, timezone=TZ)
    plan = plan_hours(_forecast(p50, "2024-08-20 05:00"), HASHPRICE, [NEW], cons)
    sched = np.array(plan.group_schedule(NEW.name))
    switches = int((sched != np.r_[True, sched[:-1]]).sum())
    assert switches <= 4
    # best use of the budget: one resume, then off for the rest (11 spikes of 181 saved
    # outweigh 10 cheap hours of 69 lost)
    assert "".join("1" if on else "0" for on in sched) == "101" + "0" * 21


def test_switch_cost_skips_small_gains() -> None:
    p50 = np.array([50, 50, 125, 50, 50, 400, 50], dtype=float)  # 125 is 6 USD over break-even
    cons = PlanConstraints(switch_cost_usd_per_mw=5.0, timezone=TZ)
    s = _sched(plan_hours(_forecast(p50), HASHPRICE, [NEW], cons), NEW)
    assert s == "1111101"  # two switches of 5 cost 10 > the 6 saved at 125; 400 pays
    assert _sched(plan_hours(_forecast(p50), HASHPRICE, [NEW]), NEW) == "1101101"


def test_deadband_from_forecast_uncertainty() -> None:
    p50 = np.array([50, 130, 130, 50], dtype=float)  # 11 above break-even; p10 = 104 below it
    narrow = _forecast(p50)
    assert _sched(plan_hours(narrow, HASHPRICE, [NEW]), NEW) == "1001"
    cons = PlanConstraints(deadband_scale=1.0, timezone=TZ)
    assert _sched(plan_hours(narrow, HASHPRICE, [NEW], cons), NEW) == "1111"
    wide = narrow.assign(p10=narrow["p50"] - 5.0)  # confident: p10 = 125 > 119
    assert _sched(plan_hours(wide, HASHPRICE, [NEW], cons), NEW) == "1001"
    m = effective_margin(119.0, np.array([100.0]), np.array([130.0]), np.array([150.0]), 0.5)
    assert m[0] == 0.0  # 11 over break-even, inside half the 30-wide lower spread
    m = effective_margin(119.0, np.array([100.0]), np.array([130.0]), np.array([150.0]), 0.2)
    assert m[0] == pytest.approx(-5.0)  # shrunk by 0.2 x 30


def test_operator_windows_override(spike_day: pd.DataFrame) -> None:
    hours = spike_day.index
    four_cp = OperatorWindow(hours[15], hours[18], WindowAction.OFF, reason="4CP")
    must_hash = OperatorWindow(hours[19], hours[20], WindowAction.ON, reason="contract")
    cons = PlanConstraints(min_on_hours=4, min_off_hours=4, timezone=TZ)
    plan = plan_hours(spike_day, HASHPRICE, [NEW, OLD], cons, windows=[four_cp, must_hash])
    for g in (NEW, OLD):
        sched = plan.group_schedule(g.name)
        assert sched[15:18] == [False, False, False]  # 4CP: off although S21 earns at 67.9
        assert sched[19] is True  # forced on at 673 USD/MWh, min off 4 h overridden
    reasons = {h.reason for h in plan.hours if h.start == hours[16].to_pydatetime()}
    assert reasons == {"window:4CP"}


def test_cap_window_curtails_least_efficient_first() -> None:
    p50 = np.full(6, 30.0)
    f = _forecast(p50)
    cap = OperatorWindow(f.index[2], f.index[4], WindowAction.CAP, cap_mw=4.6, reason="DR")
    plan = plan_hours(f, HASHPRICE, [OLD, MID, NEW], windows=[cap])
    mw = plan.hashing_mw()
    assert mw[f.index[0].to_pydatetime()] == pytest.approx(6.5)
    assert mw[f.index[2].to_pydatetime()] == pytest.approx(4.5)  # S21 3.0 + S19 XP 1.5
    assert plan.group_schedule("s19")[2:4] == [False, False]


def test_staggered_actions_least_efficient_curtails_first(spike_day: pd.DataFrame) -> None:
    cons = PlanConstraints(stagger_seconds=30.0, timezone=TZ)
    plan = plan_hours(spike_day, HASHPRICE, [NEW, OLD], cons)
    at_18 = [a for a in plan.actions if a.at.hour == 23 and a.at.day == 20]  # 18:00 CDT
    assert [a.rig for a in at_18] == ["s21-a", "s21-b", "s21-c"]  # S19s already off at 15:00
    gaps = [(b.at - a.at) for a, b in itertools.pairwise(at_18)]
    assert gaps == [timedelta(seconds=30)] * 2
    first = [a for a in plan.actions if a.kind is RigActionKind.CURTAIL][:2]
    assert [a.group for a in first] == ["s19", "s19"]
    resumes = [a for a in plan.actions if a.kind is RigActionKind.RESUME]
    assert {a.rig for a in resumes} == {"s21-a", "s21-b", "s21-c", "s19-a", "s19-b"}


def test_initial_state_min_off_respected() -> None:
    p50 = np.full(4, 30.0)
    cons = PlanConstraints(min_off_hours=3)
    plan = plan_hours(
        _forecast(p50), HASHPRICE, [NEW], cons, initial={"s21": GroupState(False, 1, 1)}
    )
    assert _sched(plan, NEW) == "0011"  # off 1 h already, must stay off 2 more


def test_switch_budget_resets_each_local_day_across_dst() -> None:
    hours = pd.date_range("2024-11-03 05:00", periods=49, freq="h", tz="UTC")
    days = local_day_index(hours, TZ)
    assert (days == days[0]).sum() == 25  # the autumn local day has 25 hours
    margin = np.tile([-100.0, 10.0], 25)[:49]
    cons = PlanConstraints(max_switches_per_day=2)
    on = schedule_group(margin, days, np.full(49, -1, dtype=np.int8), GroupState(), cons)
    switched = on != np.r_[True, on[:-1]]
    for d in np.unique(days):
        assert switched[days == d].sum() <= 2
    assert switched.sum() >= 3  # the budget came back on the next local day


def test_bad_forecasts_are_named() -> None:
    f = _forecast(np.array([50.0, np.nan, 50.0]))
    with pytest.raises(PlanError, match="NaN"):
        plan_hours(f, HASHPRICE, [NEW])
    g = _forecast(np.array([50.0, 60.0, 70.0])).drop(index=_forecast(np.ones(3)).index[1])
    with pytest.raises(PlanError, match="consecutive"):
        plan_hours(g, HASHPRICE, [NEW])
    with pytest.raises(PlanError, match="p90"):
        plan_hours(_forecast(np.ones(2)).drop(columns="p90"), HASHPRICE, [NEW])
    with pytest.raises(PlanError, match="J/TH"):
        RigGroup("bad", 0.0, 1.0)


def _value_if_feasible(
    on: list[bool], margin: np.ndarray, days: np.ndarray, state: GroupState, cons: PlanConstraints
) -> float | None:
    """Value of a schedule under the constraints, or None when it breaks one."""
    cur, run, used, value = state.on, state.hours_in_state, state.switches_today, 0.0
    for t in range(len(on)):
        if t > 0 and days[t] != days[t - 1]:
            used = 0
        if on[t] != cur:
            need = cons.min_on_hours if cur else cons.min_off_hours
            if run < need or used >= cons.max_switches_per_day:
                return None
            cur, run, used = on[t], 1, used + 1
            value -= cons.switch_cost_usd_per_mw
        else:
            run += 1
        value += margin[t] if on[t] else 0.0
    return value


def _brute_force_best(
    margin: np.ndarray, days: np.ndarray, state: GroupState, cons: PlanConstraints
) -> float:
    """Best value over every feasible on/off schedule, by enumeration."""
    n = len(margin)
    values = (
        _value_if_feasible([(mask >> t) & 1 == 1 for t in range(n)], margin, days, state, cons)
        for mask in range(1 << n)
    )
    return max(v for v in values if v is not None)


@pytest.mark.parametrize("seed", range(12))
def test_dynamic_programme_is_optimal_against_enumeration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 11
    margin = rng.normal(0, 30, n).round(2)
    days = np.array([0] * 5 + [1] * 6)
    cons = PlanConstraints(
        min_on_hours=int(rng.integers(1, 4)),
        min_off_hours=int(rng.integers(1, 4)),
        switch_cost_usd_per_mw=float(rng.choice([0.0, 5.0, 20.0])),
        max_switches_per_day=int(rng.integers(1, 5)),
    )
    state = GroupState(bool(rng.integers(0, 2)), int(rng.integers(1, 4)), int(rng.integers(0, 2)))
    on = schedule_group(margin, days, np.full(n, -1, dtype=np.int8), state, cons)
    value = _value_if_feasible([bool(x) for x in on], margin, days, state, cons)
    assert value is not None, "the planned schedule breaks a constraint"
    assert value == pytest.approx(_brute_force_best(margin, days, state, cons), abs=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_plain_python_kernel_plans_exactly_like_the_compiled_one(seed: int) -> None:
    # The daemon plans with compiled=False (no numba in its memory); backtests compile.
    rng = np.random.default_rng(100 + seed)
    n = 48
    margin = rng.normal(0, 25, n)
    days = np.repeat(np.arange(2), 24)
    forced = np.full(n, -1, dtype=np.int8)
    forced[rng.integers(0, n, 4)] = rng.integers(0, 2, 4)
    cons = PlanConstraints(
        min_on_hours=int(rng.integers(1, 4)),
        min_off_hours=int(rng.integers(1, 4)),
        switch_cost_usd_per_mw=float(rng.choice([0.0, 5.0, 20.0])),
        max_switches_per_day=int(rng.integers(1, 7)),
    )
    state = GroupState(bool(rng.integers(0, 2)), int(rng.integers(1, 4)), int(rng.integers(0, 2)))
    compiled = schedule_group(margin, days, forced, state, cons)
    plain = schedule_group(margin, days, forced, state, cons, compiled=False)
    assert plain.dtype == compiled.dtype == np.bool_
    assert plain.tolist() == compiled.tolist()
    assert 0 < int(plain.sum()) < n  # a real mix of hashing and curtailed hours


def test_planner_module_does_not_load_numba() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from forecasting.plan_types import GroupState, PlanConstraints\n"
        "from forecasting.planner import schedule_group\n"
        "on = schedule_group(np.array([5.0, -9.0, 4.0]), np.zeros(3, dtype=np.int64),\n"
        "    np.full(3, -1, dtype=np.int8), GroupState(), PlanConstraints(), compiled=False)\n"
        "print(on.tolist(), 'numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[True, False, True] False"
