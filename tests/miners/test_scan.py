"""Two-stage discovery over loopback ranges only (127.0.0.0/8 is all local on Linux)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import pytest

from miners.fleet import parse_targets
from miners.scan import scan, scan_targets, tcp_open
from miners.sim.simulator import Simulator

RPC_FAMILIES = ("antminer", "braiins", "luxos", "avalon", "whatsminer", "cgminer")


async def _hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)
    writer.close()


async def _chatter(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")  # something that is not a rig
    await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def loopback_farm(net: str) -> AsyncIterator[tuple[set[tuple[str, int, str]], list[str]]]:
    """Rigs on scattered addresses of a loopback /22: RPC rigs on 4028, AxeOS on 80, decoys."""
    hosts = [str(t.host) for t in parse_targets([net])]
    rnd = random.Random(7)
    picked = rnd.sample(hosts, 44)
    sims: list[Simulator] = []
    servers: list[asyncio.Server] = []
    expected: set[tuple[str, int, str]] = set()
    try:
        for i, host in enumerate(picked[:36]):
            family = RPC_FAMILIES[i % len(RPC_FAMILIES)]
            sim = Simulator({family: 1}, host=host, base_port=4028)
            await sim.start()
            sims.append(sim)
            expected.add((host, 4028, family))
        for host in picked[36:40]:
            sim = Simulator({"bitaxe": 1}, host=host, base_port=80)
            await sim.start()
            sims.append(sim)
            expected.add((host, 80, "bitaxe"))
        decoys = picked[40:]
        servers.append(await asyncio.start_server(_chatter, decoys[0], 4028))
        servers.append(await asyncio.start_server(_chatter, decoys[1], 80))
        servers.append(await asyncio.start_server(_hang, decoys[2], 4028))
        servers.append(await asyncio.start_server(_hang, decoys[3], 80))
        yield expected, decoys
    finally:
        for server in servers:
            server.close()
        for sim in sims:
            await sim.stop()


async def test_scan_finds_every_rig_on_a_slash_22_and_nothing_else() -> None:
    # a /22 of loopback no other test uses: 1022 hosts x (4028, 80) = 2044 probes
    net = f"127.{random.randrange(100, 250)}.{4 * random.randrange(0, 60)}.0/22"
    async with loopback_farm(net) as (expected, decoys):
        report = await scan(
            scan_targets([net]),
            connect_timeout_s=1.0,
            identify_timeout_s=1.5,
            stage1_deadline_s=20.0,
            stage2_deadline_s=20.0,
        )
    assert report.probed == 2044
    found = {(f.host, f.port, f.family) for f in report.rigs}
    assert found == expected
    # stock Antminers answer on their web port too, but 4029 is outside the scan: no fold here
    assert all(f.http_port is None for f in report.rigs)
    # the decoys were open in stage 1 and identified as nothing in stage 2
    assert len(report.open) == len(expected) + 4
    unknown = {(f.host, f.port): f for f in report.found if f.family is None}
    assert set(unknown) == {(decoys[0], 4028), (decoys[1], 80), (decoys[2], 4028), (decoys[3], 80)}
    assert "no identification within 1.5 s" in (unknown[(decoys[2], 4028)].error or "")
    assert report.stage1_unfinished == 0 and report.stage2_unfinished == 0


async def _start_on_free_range(count: int) -> Simulator:
    """A simulator on a contiguous port block (RPC ports then web ports); retries on collision."""
    for _ in range(8):
        sim = Simulator({"antminer": count}, base_port=random.randrange(20000, 30000 - 2 * count))
        try:
            await sim.start()
        except OSError:
            await sim.stop()
            continue
        return sim
    pytest.skip("no free contiguous port block on 127.0.0.1")


async def test_scan_port_range_folds_nothing_and_finds_rpc_and_web_ports() -> None:
    sim = await _start_on_free_range(150)
    try:
        first = sim.rigs[0].port or 0
        last_web = max(r.http_port or 0 for r in sim.rigs)
        report = await scan(scan_targets([f"127.0.0.1:{first}-{last_web}"]), identify_timeout_s=2.0)
    finally:
        await sim.stop()
    rpc_ports = {r.port for r in sim.rigs}
    web_ports = {r.http_port for r in sim.rigs}
    by_port = {f.port: f.family for f in report.found}
    assert {p for p, fam in by_port.items() if p in rpc_ports and fam == "antminer"} == rpc_ports
    # the web ports are recognised by the Antminer digest realm
    assert {p for p, fam in by_port.items() if p in web_ports and fam == "antminer"} == web_ports
    assert report.probed == 300 and len(report.open) == 300


async def test_stage_deadlines_bound_the_scan() -> None:
    servers = [await asyncio.start_server(_hang, "127.0.0.1", 0) for _ in range(6)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    try:
        report = await scan(
            scan_targets([f"127.0.0.1:{p}" for p in ports]),
            identify_timeout_s=5.0,
            stage2_deadline_s=0.5,
            identify_concurrency=2,
        )
    finally:
        for server in servers:
            server.close()
    assert len(report.open) == 6
    assert report.rigs == []
    assert report.stage2_s < 2.5  # 0.5 s stage deadline, not 6 x 5 s / 2
    assert report.stage2_unfinished == 6
    assert {f.error for f in report.found} == {"stage-2 deadline reached"}


async def test_tcp_open_refused_and_open() -> None:
    server = await asyncio.start_server(_chatter, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert await tcp_open("127.0.0.1", port, 1.0)
    server.close()
    await server.wait_closed()
    assert not await tcp_open("127.0.0.1", port, 1.0)


async def test_web_port_of_an_rpc_rig_folds_into_one_entry() -> None:
    host = f"127.{random.randrange(100, 250)}.{random.randrange(0, 250)}.9"
    async with Simulator({"antminer": 1}, host=host, base_port=4028) as sim:
        web = sim.rigs[0].http_port or 0
        report = await scan(scan_targets([host], ports=(4028, web)), http_ports=(web,))
    assert [f.to_dict() for f in report.rigs] == [
        {"host": host, "port": 4028, "http_port": web, "family": "antminer", "error": None}
    ]
