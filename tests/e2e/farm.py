"""The farm the end-to-end tests run: `farmctl run`'s composition plus the day-ahead planner.

`farmctl run` builds a Gateway, attaches the treasury and serves; the planner's jobs are not in
`run` yet, so this module adds them the way `farmctl demo` does (PlanService over the recorded
ERCOT feed, a `replan` job). It runs in-process (`run_farm`) or as its own process
(`python -m tests.e2e.farm CONFIG.json --clock-start ... --clock-speed ... --clock-epoch ...`),
which the crash test kills with SIGKILL and starts again on the same farm timeline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from controller import jobs
from controller.cli.daemon_cmd import farm_clock
from controller.clock import Clock
from controller.config import FarmConfig
from controller.daemon import serve
from controller.gateway import Gateway
from controller.planning import PlanService, ercot_feed
from controller.treasury_service import TreasuryService, attach_treasury, detach_treasury

log = logging.getLogger(__name__)

ZONE = "LZ_WEST"
HASHPRICE = 0.049  # USD/TH/day: the network file's last hashprice before the test day


async def run_farm(
    config: FarmConfig,
    base_dir: Path,
    clock: Clock,
    data_dir: Path,
    *,
    stop: asyncio.Event | None = None,
    on_started: Callable[[Gateway, TreasuryService | None], Awaitable[None]] | None = None,
) -> Gateway:
    """Serve the farm until `stop` (or SIGTERM); returns the gateway once it has shut down."""
    gateway = Gateway(config, base_dir=base_dir, clock=clock)
    planner = PlanService(config, ercot_feed(data_dir, ZONE), gateway.sessions, hashprice=HASHPRICE)

    async def replan(gw: Gateway) -> None:
        await asyncio.to_thread(planner.replan, gw.clock.now(), gw.rigs, gw.state.statuses)

    jobs.register_job_body("replan", replan)
    await gateway.start()
    treasury = attach_treasury(gateway, data_dir=data_dir, electricity_price=planner_price(planner))

    async def started(gw: Gateway) -> None:
        if on_started is not None:
            await on_started(gw, treasury)

    try:
        await serve(
            config, base_dir=base_dir, clock=clock, stop=stop, gateway=gateway, on_started=started
        )
    finally:
        jobs.unregister_job_body("replan")
        detach_treasury()
    return gateway


def planner_price(planner: PlanService) -> Callable[[datetime], float | None]:
    """The recorded real-time price of an hour (USD/MWh): the sale report's electricity cost."""
    frame = planner.feed.frame  # type: ignore[attr-defined]

    def price(hour: datetime) -> float | None:
        stamp = pd.Timestamp(hour)
        return float(frame["rt"].loc[stamp]) if stamp in frame.index else None

    return price


def main() -> None:
    """Subprocess entry point (the crash test)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--clock-start", required=True)
    parser.add_argument("--clock-speed", type=float, required=True)
    parser.add_argument("--clock-epoch", type=float, required=True)
    parser.add_argument("--opening-ths", type=float, default=0.0, help="Opening balance fleet.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("apscheduler", "miners", "forecasting", "treasury.venues.paper"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = FarmConfig.model_validate(json.loads(args.config.read_text()))
    clock = farm_clock(args.clock_start, args.clock_speed, args.clock_epoch)
    start = datetime.fromisoformat(args.clock_start)

    async def opening(gw: Gateway, treasury: TreasuryService | None) -> None:
        # Once per farm (the deposit reference is fixed): every restart may ask again.
        if treasury is not None and args.opening_ths > 0:
            await asyncio.to_thread(treasury.credit_opening, args.opening_ths, 30, start)

    asyncio.run(run_farm(config, args.config.parent, clock, args.data_dir, on_started=opening))


if __name__ == "__main__":
    main()
