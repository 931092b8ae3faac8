"""From prices to a stored plan: which rigs hash in which hour.

Wires forecasting's pieces for one site: the price feed (what is known at a given moment), the
real-time forecaster, the hashprice, the fleet grouped by efficiency, and the planner. The plan is
stored as desired state per rig and hour (`plan_slot`), which the reconcile job follows.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker

import hardware
from controller.clock import hour_floor
from controller.config import FarmConfig, RigConfig
from controller.tables import PlanSlot
from forecasting.plan_backtest import DA_PUBLISH_LOCAL_HOUR
from forecasting.plan_types import GroupState, HashingPlan, PlanConstraints, RigGroup
from forecasting.planner import plan_hours
from forecasting.rt_forecast import RtForecaster, horizon_forecast, rt_features
from miners.status import RigStatus

if TYPE_CHECKING:
    from controller.gateway import Gateway

log = logging.getLogger(__name__)

DEFAULT_HASHPRICE = 0.045  # USD per TH/s per day, when neither config nor network data say
T = TypeVar("T")


class PlanningError(RuntimeError):
    """The plan cannot be made now (no prices, too little history, no rigs with a known model)."""


class PriceFeed(Protocol):
    """Prices of one settlement point as known at a moment (no look-ahead)."""

    zone: str
    timezone: str

    def known(self, now: datetime) -> pd.DataFrame:
        """Hourly UTC frame with columns `da`, `rt`: RT up to the hour before `now`, DA as
        published by `now`; later hours are absent or NaN."""
        ...


def known_slice(frame: pd.DataFrame, now: datetime, timezone: str) -> pd.DataFrame:
    """What of a full DA/RT history is known at `now`: RT before the current hour, DA published.

    Day-ahead prices for tomorrow post in the early afternoon (local); real-time hourly
    averages are complete once the hour is over.
    """
    hour = pd.Timestamp(hour_floor(now))
    local = hour.tz_convert(timezone)
    days_ahead = 2 if local.hour >= DA_PUBLISH_LOCAL_HOUR else 1
    # Calendar days, not 24-hour steps: a 25-hour autumn day still ends at local midnight.
    da_end = (local.normalize() + pd.DateOffset(days=days_ahead)).tz_convert("UTC")
    out = frame.loc[frame.index < da_end, ["da", "rt"]].copy()
    out.loc[out.index >= hour, "rt"] = np.nan
    return out


@dataclass
class FramePriceFeed:
    """A feed over a recorded DA/RT history (the shared ERCOT file, or synthetic prices)."""

    frame: pd.DataFrame
    zone: str
    timezone: str

    def known(self, now: datetime) -> pd.DataFrame:
        """The part of the history known at `now`."""
        return known_slice(self.frame, now, self.timezone)


def ercot_feed(data_dir: Path, zone: str) -> FramePriceFeed:
    """Feed over the shared ERCOT hourly file for one hub or load zone."""
    from forecasting.ercot import ERCOT_TZ, ercot_file, load_ercot_hourly

    prices = load_ercot_hourly(ercot_file(data_dir), zone)
    return FramePriceFeed(prices.frame(), zone, ERCOT_TZ)


def synthetic_feed(
    start: datetime, days: int, seed: int = 7, timezone: str = "America/Chicago"
) -> FramePriceFeed:
    """Plausible DA/RT prices when no recorded data is present (demo on a fresh machine).

    A daily shape peaking in the late afternoon, day-to-day drift, real-time noise around the
    day-ahead price, and a few scarcity spikes: enough structure for the planner to act on.
    """
    rng = np.random.default_rng(seed)
    hours = pd.date_range(
        pd.Timestamp(start).tz_convert("UTC").floor("h"), periods=days * 24, freq="h"
    )
    local_hour = hours.tz_convert(timezone).hour.to_numpy()
    shape = (
        28
        + 22 * np.exp(-(((local_hour - 17) / 3.0) ** 2))
        - 8 * np.exp(-(((local_hour - 4) / 3.0) ** 2))
    )
    drift = np.repeat(rng.normal(0, 6, days).cumsum() * 0.3, 24)
    da = np.maximum(shape + drift + rng.normal(0, 3, len(hours)), -5)
    rt = da * rng.lognormal(0, 0.18, len(hours))
    spikes = rng.random(len(hours)) < 0.03
    rt[spikes] *= rng.uniform(3, 12, spikes.sum())
    rt[rng.random(len(hours)) < 0.02] = rng.uniform(-20, 0)
    return FramePriceFeed(pd.DataFrame({"da": da, "rt": rt}, index=hours), "SYNTH", timezone)


def fleet_groups(
    rigs: Sequence[RigConfig], statuses: Mapping[str, RigStatus] | None = None
) -> list[RigGroup]:
    """Rigs grouped by efficiency (J/TH rounded to 0.5), least efficient first.

    J/TH and power come from the rig's own readings when it reports both, else from the catalog
    nameplate; a rig with neither is left out of the plan (it keeps hashing) and logged.
    """
    buckets: dict[float, list[tuple[str, float]]] = {}
    for rig in rigs:
        status = (statuses or {}).get(rig.name)
        model = hardware.lookup(rig.model) or hardware.lookup(status.model if status else None)
        jth = status.efficiency_jth if status and status.efficiency_jth else None
        watts = status.power_w if status and status.power_w and status.state == "hashing" else None
        if model is not None:
            jth = jth or model.efficiency_jth
            watts = watts or model.power_w
        if not jth or not watts:
            log.warning("rig left out of the plan: efficiency unknown", extra={"rig": rig.name})
            continue
        buckets.setdefault(round(jth * 2) / 2, []).append((rig.name, watts))
    groups = [
        RigGroup(
            name=f"{jth:g}J/TH",
            j_per_th=jth,
            power_mw=sum(w for _, w in members) / 1e6,
            rigs=tuple(name for name, _ in members),
        )
        for jth, members in sorted(buckets.items(), reverse=True)
    ]
    return groups


def constraints_from(config: FarmConfig, timezone: str) -> PlanConstraints:
    """Planner constraints from the config's [planner] section."""
    p = config.planner
    return PlanConstraints(
        min_on_hours=p.min_on_hours,
        min_off_hours=p.min_off_hours,
        switch_cost_usd_per_mw=p.switch_cost_usd_per_mw,
        max_switches_per_day=p.max_switches_per_day,
        deadband_scale=p.deadband_scale,
        stagger_seconds=p.stagger_delay_s,
        timezone=timezone,
    )


class PlanService:
    """Makes and stores the site's hashing plan from its price feed."""

    def __init__(
        self,
        config: FarmConfig,
        feed: PriceFeed,
        sessions: sessionmaker[Session],
        *,
        hashprice: float | None = None,
    ) -> None:
        self.config = config
        self.feed = feed
        self.sessions = sessions
        self.hashprice = hashprice or config.planner.hashprice_usd_per_th_day or DEFAULT_HASHPRICE
        self.model: RtForecaster | None = None
        self.fitted_at: datetime | None = None
        self.last_plan: HashingPlan | None = None
        self.last_forecast: pd.DataFrame | None = None

    def refit(self, now: datetime, history_days: int = 180) -> int:
        """Refit the real-time forecaster on the hours known before `now` (the last
        `history_days` days: recent behaviour matters most and the fit stays fast)."""
        frame = self.feed.known(now)
        features = rt_features(frame["da"], frame["rt"], self.feed.timezone)
        first = pd.Timestamp(hour_floor(now))
        history = (frame.index < first) & (frame.index >= first - pd.Timedelta(days=history_days))
        self.model = RtForecaster().fit(features.loc[history], frame.loc[history, "rt"])
        self.fitted_at = now
        return int(history.sum())

    def forecast(self, now: datetime) -> pd.DataFrame:
        """p10/p50/p90 per hour from the current hour to the last published day-ahead hour.

        The tariff decides what is uncertain: a real-time site forecasts RT from DA and recent
        RT; a day-ahead site pays the published DA price (no spread); a fixed tariff is flat.
        """
        electricity = self.config.electricity
        if electricity.tariff == "fixed":
            assert electricity.fixed_price_per_mwh is not None
            hours = pd.date_range(
                pd.Timestamp(hour_floor(now)), periods=self.config.planner.horizon_hours, freq="h"
            )
            price = electricity.fixed_price_per_mwh + electricity.adder_per_mwh
            return pd.DataFrame({"p10": price, "p50": price, "p90": price}, index=hours)
        if electricity.tariff == "day_ahead":
            frame = self.feed.known(now)
            hour = pd.Timestamp(hour_floor(now))
            da = (
                frame.loc[frame.index >= hour, "da"]
                .dropna()
                .iloc[: self.config.planner.horizon_hours]
            )
            if da.empty or da.index[0] != hour:
                raise PlanningError(
                    f"no day-ahead price for {hour.isoformat()} in zone {self.feed.zone}"
                )
            da = da + electricity.adder_per_mwh
            return pd.DataFrame({"p10": da, "p50": da, "p90": da})
        if self.model is None or self.fitted_at is None or now - self.fitted_at > timedelta(days=1):
            self.refit(now)
        assert self.model is not None
        frame = self.feed.known(now)
        hour = pd.Timestamp(hour_floor(now))
        if hour not in frame.index or math.isnan(float(frame["da"].loc[hour])):
            raise PlanningError(
                f"no day-ahead price for {hour.isoformat()} in zone {self.feed.zone}"
            )
        features = rt_features(frame["da"], frame["rt"], self.feed.timezone)
        one_step = self.model.predict(features.loc[[hour]]).iloc[0]
        ahead = frame.loc[frame.index >= hour, "da"].dropna()
        horizon = ahead.iloc[: self.config.planner.horizon_hours]
        return horizon_forecast(one_step, horizon) + electricity.adder_per_mwh

    def replan(
        self,
        now: datetime,
        rigs: Sequence[RigConfig],
        statuses: Mapping[str, RigStatus] | None = None,
    ) -> HashingPlan:
        """Forecast, plan and store the plan for every rig from the current hour on."""
        groups = fleet_groups(rigs, statuses)
        if not groups:
            raise PlanningError("no rig with a known efficiency to plan")
        forecast = self.forecast(now)
        with self.sessions() as session:
            initial = {g.name: _group_state(session, g, now) for g in groups}
        plan = plan_hours(
            forecast,
            self.hashprice,
            groups,
            constraints_from(self.config, self.feed.timezone),
            initial=initial,
            created_at=now,
            # Plain Python: an hourly plan of a few groups takes milliseconds, and the daemon
            # then never loads numba/LLVM (~60 MB of its RSS; issue 7's memory budget).
            compiled=False,
        )
        self._store(plan, now)
        self.last_plan, self.last_forecast = plan, forecast
        return plan

    def _store(self, plan: HashingPlan, now: datetime) -> None:
        plan_id = now.strftime("%Y%m%dT%H%M%S")
        rigs_of = {g.name: g.rigs for g in plan.groups}
        first = hour_floor(now)
        planned = sorted({rig for rigs in rigs_of.values() for rig in rigs})
        # One row per rig and hour (5,000 rigs x 36 h = 180,000): inserted as plain rows in
        # chunks, never as ORM objects, which cost ~1 KB each and a daemon-sized RSS peak.
        slots = (
            {
                "rig": rig,
                "hour_start": hour.start,
                "desired": "hashing" if hour.hashing else "curtailed",
                "plan_id": plan_id,
                "created_at": now,
            }
            for hour in plan.hours
            for rig in rigs_of[hour.group]
        )
        # Replace this plan's hours atomically: reconcile never sees a half-written plan.
        with self.sessions.begin() as session:
            for names in _chunks(iter(planned), _SLOT_CHUNK):
                session.execute(
                    delete(PlanSlot).where(PlanSlot.hour_start >= first, PlanSlot.rig.in_(names))
                )
            for chunk in _chunks(slots, _SLOT_CHUNK):
                session.execute(insert(PlanSlot), chunk)


_SLOT_CHUNK = 5_000


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items (itertools.batched arrives in Python 3.12)."""
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _group_state(session: Session, group: RigGroup, now: datetime) -> GroupState:
    """Where a group stands before `now`, from its first rig's stored slots of the last 2 days."""
    first = hour_floor(now)
    history = session.scalars(
        select(PlanSlot.desired)
        .where(
            PlanSlot.rig == group.rigs[0],
            PlanSlot.hour_start < first,
            PlanSlot.hour_start >= first - timedelta(hours=48),
        )
        .order_by(PlanSlot.hour_start.desc())
    ).all()
    if not history:
        return GroupState()
    on = history[0] == "hashing"
    run = next((i for i, d in enumerate(history) if (d == "hashing") != on), len(history))
    today = history[: first.hour]  # hours since UTC midnight (a day's budget is approximate)
    switches = sum(1 for a, b in itertools.pairwise(today) if a != b)
    return GroupState(on=on, hours_in_state=max(1, run), switches_today=switches)


def attach_planning(
    gateway: Gateway,
    planner: PlanService,
    *,
    ingest: Callable[[datetime], int] | None = None,
    on_plan: Callable[[HashingPlan], None] | None = None,
) -> None:
    """Register the gateway's price, refit and replan jobs around one `PlanService`.

    New prices trigger a replan at once (besides the hourly one); each plan updates the plan
    metric and is handed to `on_plan` (the MQTT bridge, the demo's view).
    """
    from controller import jobs

    async def replan(gw: Gateway) -> None:
        now = gw.clock.now()
        plan = await asyncio.to_thread(planner.replan, now, gw.rigs, gw.state.statuses)
        hour = hour_floor(now)
        site_of = {r.name: r.site for r in gw.rigs}
        hashing: dict[str, int] = {}
        for group in plan.groups:
            if plan.desired(group.name, hour) is not False:
                for rig in group.rigs:
                    hashing[site_of[rig]] = hashing.get(site_of[rig], 0) + 1
        gw.metrics.observe_plan(sorted(hashing.items()))
        if planner.last_forecast is not None and len(planner.last_forecast):
            gw.metrics.price.labels(planner.feed.zone, "forecast_p50").set(
                float(planner.last_forecast["p50"].iloc[0])
            )
        gw.metrics.hashprice.set(planner.hashprice)
        if on_plan is not None:
            on_plan(plan)

    async def refit(gw: Gateway) -> None:
        await asyncio.to_thread(planner.refit, gw.clock.now())

    jobs.register_job_body("replan", replan)
    jobs.register_job_body("refit", refit)
    if ingest is not None:
        ingest_fn = ingest

        async def prices(gw: Gateway) -> None:
            written = await asyncio.to_thread(ingest_fn, gw.clock.now())
            if written:
                await replan(gw)

        jobs.register_job_body("prices", prices)


def detach_planning() -> None:
    """Unregister the planning jobs (tests and the demo run several gateways in one process)."""
    from controller import jobs

    for name in ("replan", "refit", "prices"):
        jobs.unregister_job_body(name)
