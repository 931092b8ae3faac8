"""`farmctl demo`: the whole farm embedded, on an accelerated clock, with no outside service.

Simulated rigs of every family answer on 127.0.0.1; prices are the recorded ERCOT series when
the shared data is present (else a synthetic generator); the real gateway polls, plans and
reconciles exactly as `farmctl run` does, while a farm day passes in about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from controller.broker import LocalBroker, free_port, mosquitto_binary
from controller.clock import AcceleratedClock, hour_floor
from controller.config import FarmConfig
from controller.daemon import serve
from controller.gateway import Gateway
from controller.mqtt_service import MqttService
from controller.paths import shared_data_dir
from controller.planning import (
    FramePriceFeed,
    PlanService,
    attach_planning,
    detach_planning,
    ercot_feed,
    synthetic_feed,
)
from controller.treasury_service import attach_treasury, detach_treasury
from miners.mqtt_sim import SimEndpoint, SimMqttFarm, demo_farm
from miners.sim.simulator import Simulator

log = logging.getLogger(__name__)

# Families in the demo fleet and their share; every driver family takes part.
DEMO_MIX = {
    "antminer": 6,
    "luxos": 4,
    "whatsminer": 4,
    "avalon": 3,
    "braiins": 3,
    "cgminer": 2,
    "bitaxe": 2,
}
# A summer day in West Texas with real-time spikes (used when the ERCOT file is present).
DEMO_DAY = datetime(2025, 8, 20, 5, 0, tzinfo=UTC)  # local midnight, America/Chicago (CDT)


@dataclass(slots=True)
class DemoOptions:
    """How the demo runs: clock speed, farm hours to play, fleet size, where output goes."""

    speed: float = 1440.0
    hours: float = 24.0
    rigs: int = 24
    out: Path = Path("demo-output")
    live: bool = True
    start: datetime | None = None
    seed: int = 7


@dataclass(slots=True)
class DemoResult:
    """What the demo produced, for the closing lines and the tests."""

    out: Path
    database_url: str
    farm_start: datetime
    farm_end: datetime
    plans: int = 0
    curtail_actions: int = 0
    resume_actions: int = 0
    files: dict[str, Path] = field(default_factory=dict)
    rigs_by_state: dict[str, int] = field(default_factory=dict)


MQTT_RACK = "mqtt-rack"


def start_mqtt_corner(
    out: Path, site: str, stack: contextlib.AsyncExitStack
) -> tuple[LocalBroker | None, SimMqttFarm | None]:
    """A local mosquitto and three simulated MQTT rigs with two meters, when mosquitto is
    installed (the demo runs without them otherwise, and says so)."""
    if mosquitto_binary() is None:
        log.warning("mosquitto not installed: the demo runs without its MQTT rigs and meters")
        return None, None
    broker = LocalBroker(out / "broker")
    broker.start()
    stack.callback(broker.stop)
    farm = demo_farm(
        SimEndpoint(port=broker.port), site=site, rigs=3, interval_s=1.0, rack=MQTT_RACK
    )
    farm.start()
    stack.callback(farm.stop)
    return broker, farm


def demo_fleet(total: int) -> dict[str, int]:
    """Scale the demo mix to `total` rigs (every family at least once)."""
    base = sum(DEMO_MIX.values())
    counts = {family: max(1, round(n * total / base)) for family, n in DEMO_MIX.items()}
    while sum(counts.values()) > total and max(counts.values()) > 1:
        biggest = max(counts, key=lambda f: counts[f])
        counts[biggest] -= 1
    return counts


def price_feed(options: DemoOptions, zone: str) -> tuple[FramePriceFeed, datetime, str]:
    """Recorded ERCOT prices when present, else synthetic ones; returns feed, start, source."""
    data = shared_data_dir()
    if data is not None and (data / "electricity" / "ercot").is_dir():
        feed = ercot_feed(data, zone if zone.startswith(("LZ_", "HB_")) else "LZ_WEST")
        return feed, options.start or DEMO_DAY, f"ERCOT {feed.zone} (recorded)"
    start = options.start or DEMO_DAY
    feed = synthetic_feed(start - timedelta(days=45), days=48, seed=options.seed)
    return feed, start, "synthetic prices (shared data absent)"


def demo_config(
    base: FarmConfig,
    sim: Simulator,
    out: Path,
    metrics_port: int,
    mqtt_port: int | None = None,
    mqtt_farm: SimMqttFarm | None = None,
) -> FarmConfig:
    """The example config with its rigs replaced by the simulated fleet and state under `out`."""
    site = base.sites[0]
    racks: list[str | None] = [r.id for r in site.racks] or [None]
    rigs = [
        {
            "name": f"{rig.family}-{rig.index:02d}",
            "site": site.id,
            "rack": racks[rig.index % len(racks)],
            "address": f"{rig.host}:{rig.port if rig.family != 'bitaxe' else rig.http_port}",
            "family": rig.family,
            "model": rig.model.model,
            "http_port": rig.http_port,
        }
        for rig in sim.rigs
    ]
    raw = base.model_dump(mode="json", exclude_none=True)
    raw["farm"] |= {"data_dir": str(out), "log_format": "text"}
    raw["rigs"] = [{k: v for k, v in r.items() if v is not None} for r in rigs]
    raw["database"] = {"url": f"sqlite:///{out / 'farmctl.db'}"}
    raw["metrics"] = {"enabled": True, "host": "127.0.0.1", "port": metrics_port}
    raw["meters"] = []
    raw["mqtt"] = raw["mqtt"] | {"enabled": False}
    if mqtt_port is not None and mqtt_farm is not None:
        # The MQTT corner: agents on their own rack, a Tasmota plug on one rig, a Shelly on the rack.
        raw["sites"][0]["racks"] = [*raw["sites"][0].get("racks", []), {"id": MQTT_RACK}]
        raw["rigs"] += [
            {
                "name": rig.rig,
                "site": site.id,
                "rack": MQTT_RACK,
                "address": rig.rig,
                "family": "mqtt",
                "model": rig.model,
            }
            for rig in mqtt_farm.rigs
        ]
        raw["meters"] = [
            {"id": m.meter_id, "kind": m.kind, "scope": m.scope, "target": m.target}
            for m in mqtt_farm.meter_configs
        ]
        raw["mqtt"] = raw["mqtt"] | {
            "enabled": True,
            "host": "127.0.0.1",
            "port": mqtt_port,
            "client_id": "farmctl-demo",
            "ha_discovery": True,
        }
        raw["mqtt"].pop("password", None)
        raw["mqtt"].pop("username", None)
    raw["scheduler"] = raw["scheduler"] | {"misfire_grace_s": 5}
    return FarmConfig.model_validate(raw)


def _rt_price(feed: FramePriceFeed) -> Callable[[datetime], float | None]:
    """The recorded real-time price of an hour (USD/MWh), for the sale report's electricity."""

    def price(hour: datetime) -> float | None:
        import pandas as pd

        stamp = pd.Timestamp(hour)
        return float(feed.frame["rt"].loc[stamp]) if stamp in feed.frame.index else None

    return price


def network_hashprice(day: datetime) -> float | None:
    """Hashprice on the demo day from the shared network history, when present."""
    data = shared_data_dir()
    if data is None:
        return None
    from forecasting.economics import load_network_days, network_day, network_file

    try:
        days = load_network_days(network_file(data))
        # The shared history may end before the demo day: use its latest day up to then that
        # carries fees (the file has fees for 2024-02..2025-02 only).
        with_fees = [
            d for d, n in days.items() if d <= day.date() and n.fees_btc_per_day is not None
        ]
        if with_fees:
            return float(network_day(days, max(with_fees)).hashprice())
        return float(
            network_day(days, max(d for d in days if d <= day.date())).hashprice(include_fees=False)
        )
    except Exception as exc:  # the demo must still run on a partial data folder
        log.warning("hashprice from network data unavailable", extra={"error": str(exc)})
        return None


async def run_demo(
    base: FarmConfig,
    options: DemoOptions,
    *,
    view: Callable[[Gateway, DemoState], Awaitable[None]] | None = None,
) -> DemoResult:
    """Run the embedded farm for `options.hours` farm hours and return what it produced."""
    out = options.out.resolve() / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    zone = base.electricity.zone
    feed, start, source = price_feed(options, zone)
    hashprice = base.planner.hashprice_usd_per_th_day or network_hashprice(start) or 0.05
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(
            Simulator(demo_fleet(options.rigs), ramp_up_s=2.0, ramp_down_s=0.5)
        )
        broker, mqtt_farm = start_mqtt_corner(out, base.sites[0].id, stack)
        config = demo_config(
            base, sim, out, free_port(), broker.port if broker else None, mqtt_farm
        )
        gateway = Gateway(config, base_dir=out)
        mqtt = MqttService(gateway) if config.mqtt.enabled else None
        if mqtt is not None:
            gateway.use_driver_builder(mqtt.wrap_driver_builder(gateway.driver_builder))
            stack.callback(mqtt.stop)
        planner = PlanService(config, feed, gateway.sessions, hashprice=hashprice)
        # The daily refit and a first plan happen before the farm day starts, as they would
        # at midnight (and the planner's compiled kernel is warm when the clock runs).
        await gateway.start()
        if mqtt is not None:
            mqtt.start()
        await asyncio.to_thread(planner.refit, start)
        first_plan = await asyncio.to_thread(planner.replan, start, gateway.rigs, {})
        clock = AcceleratedClock(start, options.speed)
        gateway.clock = clock
        # Treasury (controller/treasury_service.py): paper venue, mined coins, sales, reports.
        treasury = attach_treasury(gateway, electricity_price=_rt_price(feed))
        if treasury is not None:  # it starts with a month of the fleet's unsold coins
            nominal_ths = sum(rig.model.nominal_ths for rig in sim.rigs)
            await asyncio.to_thread(treasury.credit_opening, nominal_ths, 30, start)
        state = DemoState(
            source=source,
            hashprice=hashprice,
            feed=feed,
            end=start + timedelta(hours=options.hours),
            plans=1,
            plan=first_plan,
            first_plan=first_plan,
            treasury=treasury,
        )

        def on_plan(plan: Any) -> None:
            if mqtt is not None:
                mqtt.publish_plan(plan)
            state.plans += 1
            state.plan = plan
            hour = hour_floor(clock.now())
            state.hashing_now = sum(
                len(g.rigs) for g in plan.groups if plan.desired(g.name, hour) is not False
            )

        attach_planning(gateway, planner, on_plan=on_plan)
        stop = asyncio.Event()

        async def drive(gw: Gateway) -> None:
            # The real reconcile job runs every farm minute; count its actions for the summary.
            while clock.now() < state.end:
                report = gw.state.last_reconcile
                if report is not None and report is not state.last_report:
                    state.curtail_actions += len(report.curtailed)
                    state.resume_actions += len(report.resumed)
                    state.last_report = report
                if view is not None:
                    await view(gw, state)
                await asyncio.sleep(0.25)
            stop.set()

        try:
            await serve(
                config, base_dir=out, clock=clock, stop=stop, gateway=gateway, on_started=drive
            )
        finally:
            detach_planning()
            detach_treasury()
        result = DemoResult(
            out=out,
            database_url=gateway.database_url,
            farm_start=start,
            farm_end=clock.now(),
            plans=state.plans,
            curtail_actions=state.curtail_actions,
            resume_actions=state.resume_actions,
        )
        for status in gateway.state.statuses.values():
            result.rigs_by_state[status.state] = result.rigs_by_state.get(status.state, 0) + 1
        result.files.update(write_outputs(out, gateway, state))
        if treasury is not None:  # the sale report of the demo's farm span, with its plot
            label = f"sales-{start:%Y-%m-%d}"
            written = await asyncio.to_thread(
                treasury.report, start, result.farm_end, label, send=False, png=True
            )
            result.files.update({f"sale report {name}": path for name, path in written.items()})
    return result


@dataclass(slots=True)
class DemoState:
    """What the demo's driver and view share while it runs."""

    source: str
    hashprice: float
    feed: FramePriceFeed
    end: datetime
    plans: int = 0
    plan: Any = None
    first_plan: Any = None
    treasury: Any = None  # controller.treasury_service.TreasuryService (panel in the view)
    hashing_now: int = 0
    curtail_actions: int = 0
    resume_actions: int = 0
    last_report: Any = None


def write_outputs(out: Path, gateway: Gateway, state: DemoState) -> dict[str, Path]:
    """The plan as CSV and a plot of it over the prices; a JSON summary."""
    from sqlalchemy import select

    from controller.tables import PlanSlot

    files: dict[str, Path] = {}
    with gateway.sessions() as session:
        slots = session.scalars(select(PlanSlot).order_by(PlanSlot.hour_start, PlanSlot.rig)).all()
    plan_csv = out / "plan.csv"
    with plan_csv.open("w") as f:
        f.write("hour_start_utc,rig,desired,plan_id\n")
        for slot in slots:
            f.write(f"{slot.hour_start.isoformat()},{slot.rig},{slot.desired},{slot.plan_id}\n")
    files["plan_csv"] = plan_csv
    summary = out / "summary.json"
    summary.write_text(
        json.dumps(
            {
                "prices": state.source,
                "hashprice_usd_per_th_day": state.hashprice,
                "plans": state.plans,
                "curtail_actions": state.curtail_actions,
                "resume_actions": state.resume_actions,
            },
            indent=2,
        )
    )
    files["summary"] = summary
    if state.first_plan is not None:
        from forecasting.plan_plots import plot_hashing_plan

        files["plan_plot"] = plot_hashing_plan(
            state.first_plan, out / "plan.png", timezone=state.feed.timezone
        )
    return files
