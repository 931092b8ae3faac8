"""Opt-in parallel commands: one rig's separate requests on connections at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from miners.detect import driver_for
from miners.driver import RigDriver
from miners.drivers.antminer import AntminerDriver
from miners.fleet import FleetPoller, Target
from miners.rpc import RpcReplyError, rpc_multi
from tests.miners.test_fleet import CountingRigServer


def _replies(miner_responses: Path) -> dict[str, bytes]:
    folder = miner_responses / "antminer"
    return {
        "summary": (folder / "summary_s19pro.json").read_bytes(),
        "stats": (folder / "stats_s19pro_overheating.json").read_bytes(),
        "pools": (folder / "pools_s19_sleeping.json").read_bytes(),
    }


async def test_parallel_commands_share_one_device_latency(miner_responses: Path) -> None:
    server = CountingRigServer(_replies(miner_responses), delay_s=0.3)
    (port,) = await server.start(1)
    try:
        started = time.monotonic()
        replies = await rpc_multi(
            "127.0.0.1", port, ["summary", "stats", "pools"], allow_multi=False, parallel=True
        )
        took = time.monotonic() - started
    finally:
        await server.stop()
    assert list(replies) == ["summary", "stats", "pools"]
    assert replies["summary"]["SUMMARY"][0]["Elapsed"] == 50474
    assert server.max_open == 3 and server.connections == 3
    assert took < 0.6  # one 0.3 s device latency, not three in a row (0.9 s)


async def test_parallel_failure_raises_the_first_failed_command(miner_responses: Path) -> None:
    replies = _replies(miner_responses)
    replies["stats"] = b"[1, 2]"  # JSON, but not an object: unusable
    server = CountingRigServer(replies, delay_s=0.0)
    (port,) = await server.start(1)
    try:
        with pytest.raises(RpcReplyError) as caught:
            await rpc_multi(
                "127.0.0.1", port, ["summary", "stats", "pools"], allow_multi=False, parallel=True
            )
    finally:
        await server.stop()
    assert caught.value.command == "stats"
    assert server.connections == 3  # every request ran to its end before the error surfaced


async def test_fleet_with_parallel_antminer_commands(miner_responses: Path) -> None:
    server = CountingRigServer(_replies(miner_responses), delay_s=0.02)
    ports = await server.start(6)
    try:
        targets = [Target("127.0.0.1", p) for p in ports]
        drivers: dict[Target, RigDriver] = {}
        for t in targets:
            driver = driver_for("antminer", t.host, t.port, http_port=1)
            assert isinstance(driver, AntminerDriver)
            driver.parallel_commands = True
            drivers[t] = driver
        poller = FleetPoller(targets, drivers=drivers, concurrency=2)
        await poller.poll_once(deadline_s=10.0)
        statuses = await poller.poll_once(deadline_s=10.0)
    finally:
        await server.stop()
    assert all(s.model == "Antminer S19 Pro" and s.state != "offline" for s in statuses)
    assert server.max_open <= 2 * 4  # two rigs in flight, at most four commands each (cold)
