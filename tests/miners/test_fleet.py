"""Fleet poller against the rig simulator and small real TCP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from miners.detect import driver_for
from miners.driver import RigDriver
from miners.drivers.base import DriverTimeouts
from miners.fleet import FleetPoller, Target, TargetError, parse_targets, summarize
from miners.sim.rig import Fault
from miners.sim.simulator import Simulator

# The driver's own deadlines are longer than the poller's: the poller's must be the one that bites.
SLOW_DRIVER = DriverTimeouts(connect_s=2.0, read_s=10.0)


def fleet_of(sim: Simulator, **poller_args: object) -> FleetPoller:
    drivers: dict[Target, RigDriver] = {
        Target(r.host, r.port): driver_for(  # type: ignore[arg-type]
            r.family, r.host, r.port, http_port=r.http_port, timeouts=SLOW_DRIVER
        )
        for r in sim.rigs
    }
    return FleetPoller(list(drivers), drivers=drivers, **poller_args)  # type: ignore[arg-type]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator({"antminer": 12}) as s:
        yield s


def test_parse_targets_specs_and_errors() -> None:
    assert parse_targets(["10.0.0.5:4028"]) == [Target("10.0.0.5", 4028)]
    assert parse_targets(["127.0.0.1:40000-40002"]) == [
        Target("127.0.0.1", p) for p in (40000, 40001, 40002)
    ]
    cidr = parse_targets(["10.0.0.0/22"])
    assert len(cidr) == 1022 and cidr[0] == Target("10.0.0.1", 4028)
    assert cidr[-1] == Target("10.0.3.254", 4028)
    assert parse_targets(["10.0.0.7/32"]) == [Target("10.0.0.7", 4028)]
    assert parse_targets(["rig7.site"]) == [Target("rig7.site", 4028)]
    # duplicates collapse, order kept
    assert parse_targets(["b:1", "a:2", "b:1"]) == [Target("b", 1), Target("a", 2)]
    assert parse_targets(["10.0.0.0/30"], ports=(4028, 80)) == [
        Target("10.0.0.1", 4028), Target("10.0.0.1", 80),
        Target("10.0.0.2", 4028), Target("10.0.0.2", 80),
    ]  # fmt: skip
    for bad, msg in [
        ("10.0.0.5:99999", "outside 1-65535"),
        ("10.0.0.5:abc", "not a number"),
        ("127.0.0.1:5-2", "reversed"),
        ("10.0.0.0/33", "bad CIDR"),
        ("10.0.0.0/4", "more than"),
        (":4028", "empty host"),
    ]:
        with pytest.raises(TargetError, match=msg):
            parse_targets([bad])


async def test_poll_reads_every_rig_into_full_status(sim: Simulator) -> None:
    poller = fleet_of(sim)
    statuses = await poller.poll_once(deadline_s=5.0)
    assert len(statuses) == 12
    assert summarize(statuses)["hashing"] == 12
    by_mac = {s.mac: s for s in statuses}
    first = by_mac["02:53:00:00:00:00"]
    assert first.model == "Antminer S19 Pro"
    assert first.hashrate_ths == pytest.approx(110.0)  # S19 Pro nominal in the simulator
    assert len(first.boards) == 3 and len(first.fans_rpm) == 4
    assert first.pools[0].url == "stratum+tcp://btc.pool.example:3333"
    assert first.last_seen is not None
    assert poller.stats.online == 12 and not poller.stats.deadline_hit
    assert poller.target_of("02:53:00:00:00:00") == Target(sim.rigs[0].host, sim.rigs[0].port)


async def test_hanging_rig_goes_offline_inside_the_deadline_without_stale_values(
    sim: Simulator,
) -> None:
    poller = fleet_of(sim, rig_timeout_s=0.5)
    good = await poller.poll_once(deadline_s=5.0)
    hung = sim.rigs[3]
    seen_before = good[3].last_seen
    assert good[3].hashrate_ths == pytest.approx(110.0)
    sim.set_fault(hung, Fault.HANG)

    started = time.perf_counter()
    statuses = await poller.poll_once(deadline_s=3.0)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0  # the hung rig costs its 0.5 s timeout, not the driver's 10 s

    down = statuses[3]
    assert down.state == "offline"
    assert down.state_reason == "no reply within 0.50 s"
    assert down.mac == good[3].mac and down.model == "Antminer S19 Pro"
    assert down.last_seen == seen_before  # its last good read, not now
    # nothing from the old read is shown as live
    assert down.hashrate_ths is None and down.hashrate_avg_ths is None
    assert down.power_w is None and down.uptime_s is None
    assert down.boards == [] and down.fans_rpm == [] and down.pools == []
    # the old read is still available for reference
    reference = poller.last_good(down.mac or "")
    assert reference is not None and reference.hashrate_ths == pytest.approx(110.0)
    assert all(s.state == "hashing" for i, s in enumerate(statuses) if i != 3)

    sim.set_fault(hung, Fault.HANG, on=False)
    back = await poller.poll_once(deadline_s=3.0)
    assert back[3].state == "hashing"
    assert back[3].last_seen is not None and seen_before is not None
    assert back[3].last_seen > seen_before


async def test_fleet_deadline_holds_when_many_rigs_hang() -> None:
    async with Simulator({"antminer": 10}) as sim:
        for rig in sim.rigs[2:]:
            sim.set_fault(rig, Fault.HANG)
        # 8 hung rigs, 2 at a time, 5 s each: 20 s without the fleet deadline
        poller = fleet_of(sim, concurrency=2, rig_timeout_s=5.0)
        started = time.perf_counter()
        statuses = await poller.poll_once(deadline_s=0.8)
        elapsed = time.perf_counter() - started
    assert elapsed < 2.5  # 0.8 s deadline (+ slack for a loaded machine), not 20 s
    assert [s.state for s in statuses[:2]] == ["hashing", "hashing"]
    assert all(s.state == "offline" for s in statuses[2:])
    assert all(s.last_seen is None for s in statuses[2:])  # never read: never seen
    reasons = {s.state_reason for s in statuses[2:]}
    assert "fleet poll deadline reached before this rig was polled" in reasons
    assert poller.stats.deadline_hit and poller.stats.offline == 8


async def test_unreadable_reply_is_error_without_stale_values(sim: Simulator) -> None:
    poller = fleet_of(sim)
    good = await poller.poll_once(deadline_s=5.0)
    sim.set_fault(sim.rigs[5], Fault.GARBAGE)
    statuses = await poller.poll_once(deadline_s=5.0)
    sick = statuses[5]
    assert sick.state == "error"
    assert sick.state_reason and "summary" in sick.state_reason
    assert sick.last_seen == good[5].last_seen
    assert sick.hashrate_ths is None and sick.boards == [] and sick.pools == []


async def test_refused_rig_never_seen_is_offline_with_no_identity() -> None:
    # a port nothing listens on: bind, note the port, close
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    drv = driver_for("antminer", "127.0.0.1", port, http_port=port, timeouts=SLOW_DRIVER)
    poller = FleetPoller([Target("127.0.0.1", port)], drivers={Target("127.0.0.1", port): drv})
    [status] = await poller.poll_once(deadline_s=2.0)
    assert status.state == "offline" and status.mac is None and status.last_seen is None
    assert status.state_reason and "connect failed" in status.state_reason


async def test_rig_identity_follows_its_mac_to_a_new_address() -> None:
    # Two simulators with the same mix give their first rig the same MAC: one rig, two addresses.
    old_sim = Simulator({"antminer": 1})
    await old_sim.start()
    old = old_sim.rigs[0]
    old_target = Target(old.host, old.port or 0)
    async with Simulator({"antminer": 1}) as new_sim:
        new = new_sim.rigs[0]
        new_target = Target(new.host, new.port or 0)
        drivers: dict[Target, RigDriver] = {
            old_target: driver_for(
                "antminer", old.host, old.port or 0, http_port=old.http_port or 0
            ),
            new_target: driver_for(
                "antminer", new.host, new.port or 0, http_port=new.http_port or 0
            ),
        }
        poller = FleetPoller([old_target], drivers=drivers)
        [first] = await poller.poll_once(deadline_s=3.0)
        assert first.mac == "02:53:00:00:00:00"
        await old_sim.stop()  # the rig leaves its old address (DHCP renumbered it)
        poller.targets = [old_target, new_target]
        gone, moved = await poller.poll_once(deadline_s=3.0)
    assert moved.state == "hashing" and moved.mac == first.mac
    assert poller.target_of(first.mac or "") == new_target
    # the old address no longer names the rig: no identity, no last_seen borrowed from it
    assert gone.state == "offline" and gone.mac is None and gone.last_seen is None


class CountingRigServer:
    """Serves the captured stock S19 replies on many ports with a delay; counts open connections."""

    def __init__(self, replies: dict[str, bytes], delay_s: float) -> None:
        self.replies, self.delay_s = replies, delay_s
        self.open = 0
        self.max_open = 0
        self.connections = 0
        self.servers: list[asyncio.Server] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.connections += 1
        self.max_open = max(self.max_open, self.open)
        try:
            request = json.loads((await reader.read(4096)).rstrip(b"\0"))
            await asyncio.sleep(self.delay_s)
            writer.write(
                self.replies.get(request["command"], b'{"STATUS":[{"STATUS":"E"}]}') + b"\0"
            )
            await writer.drain()
        finally:
            writer.close()
            self.open -= 1

    async def start(self, count: int) -> list[int]:
        for _ in range(count):
            self.servers.append(await asyncio.start_server(self.handle, "127.0.0.1", 0))
        return [s.sockets[0].getsockname()[1] for s in self.servers]

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


async def test_concurrency_is_bounded(miner_responses: Path) -> None:
    folder = miner_responses / "antminer"
    replies = {
        "summary": (folder / "summary_s19pro.json").read_bytes(),
        "stats": (folder / "stats_s19pro_overheating.json").read_bytes(),
        "pools": (folder / "pools_s19_sleeping.json").read_bytes(),
    }
    server = CountingRigServer(replies, delay_s=0.02)
    ports = await server.start(24)
    try:
        targets = [Target("127.0.0.1", p) for p in ports]
        # web identity on a closed port fails fast; the driver keeps the RPC status
        drivers: dict[Target, RigDriver] = {
            t: driver_for("antminer", t.host, t.port, http_port=1) for t in targets
        }
        poller = FleetPoller(targets, drivers=drivers, concurrency=4)
        statuses = await poller.poll_once(deadline_s=10.0)
        before = server.connections
        await poller.poll_once(deadline_s=10.0)
        # a warm poll is summary, stats and pools: one connection each (version was read once)
        assert server.connections - before == 3 * 24
    finally:
        await server.stop()
    assert server.max_open == 4  # the poller used its concurrency, and never more
    assert poller.stats.max_in_flight == 4
    # every rig read from the captured S19 Pro replies (chips at 93/94/97 C in the stats capture)
    assert all(s.state != "offline" and s.model == "Antminer S19 Pro" for s in statuses)
    assert {max(b.chip_temp_c or 0 for b in s.boards) for s in statuses} == {97.0}


def test_poller_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        FleetPoller([], concurrency=0)
    with pytest.raises(ValueError, match="rig_timeout_s"):
        FleetPoller([], rig_timeout_s=0)


async def test_default_detection_and_backoff_for_addresses_without_a_rig() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    closed = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with Simulator({"cgminer": 1, "braiins": 1}) as sim:
        targets = [Target("127.0.0.1", r.port or 0) for r in sim.rigs]
        targets.append(Target("127.0.0.1", closed))
        # no drivers given: the default factory detects each family (miners.detect.make_driver)
        poller = FleetPoller(targets, rig_timeout_s=3.0, redetect_s=60.0)
        first = await poller.poll_once(deadline_s=5.0)
        assert [s.family for s in first[:2]] == ["cgminer", "braiins"]
        assert [s.state for s in first[:2]] == ["hashing", "hashing"]
        assert first[2].state == "offline" and "no known firmware" in (first[2].state_reason or "")
        second = await poller.poll_once(deadline_s=5.0)
    # the empty address is not probed again for a minute
    assert second[2].state_reason == "not identified; next try in 60 s"
    assert [s.state for s in second[:2]] == ["hashing", "hashing"]
