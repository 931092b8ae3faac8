"""The farm the end-to-end tests run: `farmctl run`'s composition plus the day-ahead planner.

Gateway, treasury (`attach_treasury`, as `farmctl run` does) and a planner that reads the
recorded ERCOT feed directly (as `farmctl demo` does), served in-process by `serve()`: the test
reads the simulated rigs' own state while the day runs. (The crash test runs `farmctl run`
itself as a process, its planner fed from the price store.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from controller import jobs
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
