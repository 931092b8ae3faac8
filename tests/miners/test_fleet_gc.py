"""The sweep's GC setting: raised while a poll runs, restored after (also after overlapping polls)."""

from __future__ import annotations

import asyncio
import gc

from miners.detect import driver_for
from miners.driver import RigDriver
from miners.fleet import SWEEP_GC_GEN0, SWEEP_GC_OLDER, FleetPoller, Target
from miners.sim.simulator import Simulator


async def test_gc_threshold_raised_during_sweep_and_restored_after() -> None:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    seen: list[tuple[int, int, int]] = []
    try:
        async with Simulator({"antminer": 4}, latency_ms=50.0) as sim:
            drivers: dict[Target, RigDriver] = {
                Target(r.host, r.port): driver_for(r.family, r.host, r.port, http_port=r.http_port)
                for r in sim.rigs
            }
            first = FleetPoller(list(drivers)[:2], drivers=dict(list(drivers.items())[:2]))
            second = FleetPoller(list(drivers)[2:], drivers=dict(list(drivers.items())[2:]))

            async def watch() -> None:
                await asyncio.sleep(0.02)
                seen.append(gc.get_threshold())

            one, two, _ = await asyncio.gather(
                first.poll_once(10.0), second.poll_once(10.0), watch()
            )
            assert all(s.state == "hashing" for s in [*one, *two])
            assert seen == [(SWEEP_GC_GEN0, SWEEP_GC_OLDER, SWEEP_GC_OLDER)]
            assert gc.get_threshold() == (700, 10, 10)  # restored once both sweeps ended

            gc.set_threshold(0, 10, 10)  # the application turned automatic GC off: keep it off
            await first.poll_once(10.0)
            assert gc.get_threshold() == (0, 10, 10)
    finally:
        gc.set_threshold(*saved)
