"""Remediation: escalation order against simulated rigs, rate limits per rig and site, staggering."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from miners.detect import driver_for
from miners.drivers.base import DriverTimeouts
from miners.fleet import FleetPoller, Target
from miners.health import ActiveAlert, HashrateLow, HealthMonitor
from miners.remediation import (
    Notification,
    RateLimiter,
    RemediationPolicy,
    Remediator,
    staggered,
)
from miners.rpc import rpc_command
from miners.sim.rig import Fault
from miners.sim.simulator import Simulator

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FAST = DriverTimeouts(connect_s=1.0, read_s=2.0, verify_s=5.0, verify_interval_s=0.05)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def alert(rig: str, rule: str = "hashrate_low") -> ActiveAlert:
    return ActiveAlert(rig, rule, "warning", T0, f"{rule} on {rig}")


async def test_ladder_restart_then_reboot_then_notify_on_a_simulated_rig() -> None:
    async with Simulator({"antminer": 2}, ramp_up_s=0.1, ramp_down_s=0.05, reboot_s=0.3) as sim:
        drivers = {
            Target(r.host, r.port or 0): driver_for(
                "antminer", r.host, r.port or 0, http_port=r.http_port or 0, timeouts=FAST
            )
            for r in sim.rigs
        }
        poller = FleetPoller(list(drivers), drivers=drivers)
        monitor = HealthMonitor([HashrateLow(min_pct=80, window=timedelta(minutes=5))])
        sent: list[Notification] = []
        remediator = Remediator(RemediationPolicy(batch_delay_s=0.0), notify=sent.append)
        sick = sim.rigs[1]
        sim.set_fault(sick, Fault.MISSING_BOARD)  # 2 of 3 boards: 66.7 % of expected

        async def round_at(minutes: float) -> list[tuple[str, str]]:
            statuses = await poller.poll_once(deadline_s=5.0)
            monitor.evaluate(statuses, at(minutes))
            records = await remediator.step(monitor.active(), poller.drivers_by_rig(), at(minutes))
            return [(r.action.step, r.outcome) for r in records]

        assert await round_at(0) == []  # condition seen, not yet sustained
        boot_before, ramp_before = sick.boot_time, sick.ramp.t0
        assert await round_at(5) == [("restart_mining", "done")]
        # the rig really went through a curtail and a resume (a new ramp up started)
        assert sick.ramp.t0 > ramp_before and sick.mode == "hashing"
        assert await round_at(10) == []  # the restart gets its step interval to work
        assert await round_at(15) == [("reboot", "done")]
        assert sick.boot_time > boot_before
        await asyncio.sleep(0.5)  # back up after its 0.3 s reboot
        assert await round_at(25) == [("notify", "notified")]
        assert [(n.rig, n.rule) for n in sent] == [("02:53:00:00:00:01", "hashrate_low")]
        assert "66.7 % of expected" in sent[0].message
        assert await round_at(35) == []  # ladder exhausted: wait for a human

        sim.set_fault(sick, Fault.MISSING_BOARD, on=False)
        await asyncio.sleep(0.2)
        assert await round_at(40) == []  # alert clears, the ladder resets
        assert monitor.active() == []
        sim.set_fault(sick, Fault.MISSING_BOARD)
        await round_at(41)
        assert await round_at(46) == [("restart_mining", "done")]  # starts again from the bottom


def test_per_rig_rate_limit_defers_the_next_step() -> None:
    policy = RemediationPolicy(
        step_interval=timedelta(0), per_rig_limit=1, per_rig_window=timedelta(hours=1)
    )
    remediator = Remediator(policy)
    assert [a.step for a in remediator.plan([alert("rig-a")], at(0))] == ["restart_mining"]
    assert remediator.plan([alert("rig-a")], at(30)) == []
    assert [(a.step, why) for a, why in remediator.deferred] == [("reboot", "per-rig rate limit")]
    # the window slides: an hour after the first action the reboot goes out
    assert [a.step for a in remediator.plan([alert("rig-a")], at(60))] == ["reboot"]
    # notifying is never rate-limited
    assert [a.step for a in remediator.plan([alert("rig-a")], at(61))] == ["notify"]


def test_per_site_rate_limit_and_one_action_per_rig_per_round() -> None:
    sites = {"r1": "north", "r2": "north", "r3": "north", "r4": "south"}
    policy = RemediationPolicy(per_site_limit=2, per_site_window=timedelta(minutes=10))
    remediator = Remediator(policy, site_of=sites)
    alerts = [alert(r) for r in sites] + [alert("r1", "fan_stopped")]
    planned = remediator.plan(alerts, at(0))
    assert sorted((a.rig, a.rule, a.site) for a in planned) == [
        ("r1", "fan_stopped", "north"),
        ("r2", "hashrate_low", "north"),
        ("r4", "hashrate_low", "south"),
    ]
    assert sorted((a.rig, why) for a, why in remediator.deferred) == [
        ("r1", "another action for this rig this round"),
        ("r3", "per-site rate limit (site north)"),
    ]
    # ten minutes later the north budget is back
    again = remediator.plan(alerts, at(10))
    assert {(a.rig, a.step) for a in again} >= {("r3", "restart_mining")}


def test_ladders_per_rule_and_unknown_rules() -> None:
    remediator = Remediator()
    planned = remediator.plan(
        [alert("x", "pool_hijack"), alert("y", "overheat"), alert("z", "made_up")], at(0)
    )
    assert sorted((a.rig, a.step) for a in planned) == [("x", "notify"), ("y", "notify")]


def test_rate_limiter_sliding_window() -> None:
    limiter = RateLimiter(2, timedelta(minutes=10))
    limiter.record("k", at(0))
    limiter.record("k", at(4))
    assert not limiter.allows("k", at(9))
    assert limiter.allows("k", at(10))  # the first event left the window
    with pytest.raises(ValueError, match="rate limit"):
        RateLimiter(0, timedelta(minutes=1))


async def test_missing_driver_is_a_failed_step_and_the_ladder_does_not_wait() -> None:
    remediator = Remediator(RemediationPolicy(batch_delay_s=0.0))
    records = await remediator.step([alert("ghost")], {}, at(0))
    assert [(r.action.step, r.outcome, r.detail) for r in records] == [
        ("restart_mining", "failed", "no driver for this rig (not identified yet)")
    ]
    # the failed step did not start the interval: the next round escalates at once
    records = await remediator.step([alert("ghost")], {}, at(1))
    assert [r.action.step for r in records] == ["reboot"]


async def test_bulk_actions_are_staggered_in_batches() -> None:
    async with Simulator({"antminer": 7}) as sim:
        loop = asyncio.get_running_loop()
        started: list[tuple[int, float]] = []

        def job(i: int):  # type: ignore[no-untyped-def]
            async def run() -> str:
                started.append((i, loop.time()))
                reply = await rpc_command("127.0.0.1", sim.rigs[i].port or 0, "version")
                return str(reply["VERSION"][0]["Type"])

            return run

        t0 = loop.time()
        results = await staggered([job(i) for i in range(7)], batch_size=3, delay_s=0.25)
    assert results == ["Antminer S19 Pro"] * 7
    offsets = {i: t - t0 for i, t in started}
    batches = [[0, 1, 2], [3, 4, 5], [6]]
    for n, batch in enumerate(batches):
        times = [offsets[i] for i in batch]
        assert max(times) - min(times) < 0.15  # a batch goes out together
        if n:
            gap = min(times) - max(offsets[i] for i in batches[n - 1])
            assert gap >= 0.25  # and waits the delay after the previous one
    with pytest.raises(ValueError, match="batch_size"):
        await staggered([], batch_size=0, delay_s=1.0)
