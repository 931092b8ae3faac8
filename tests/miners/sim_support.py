"""Helpers for tests that run drivers against the simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from miners.drivers.base import DriverTimeouts
from miners.sim import Simulator

# Short ramps and deadlines so action tests take fractions of a second.
FAST = DriverTimeouts(connect_s=1.0, read_s=1.0, verify_s=5.0, verify_interval_s=0.05)
FAMILY_MIX = ["antminer", "braiins", "whatsminer", "avalon", "luxos", "cgminer", "bitaxe"]


def fast_sim(mix: list[str] | dict[str, int], **kw: object) -> Simulator:
    """A simulator with 0.2 s ramps and a 0.3 s reboot."""
    opts: dict[str, object] = {"ramp_up_s": 0.2, "ramp_down_s": 0.2, "reboot_s": 0.3}
    opts.update(kw)
    return Simulator(mix, **opts)  # type: ignore[arg-type]


@contextmanager
def sim_in_thread(mix: list[str] | dict[str, int], **kw: object) -> Iterator[Simulator]:
    """A simulator serving from its own event loop thread (for code that calls asyncio.run)."""
    sim = fast_sim(mix, **kw)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(sim.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "simulator did not start"
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
