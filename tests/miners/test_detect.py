"""Family detection from real captured `version` replies and from every simulated family."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from miners.detect import (
    detect_family,
    driver_for,
    family_from_devdetails,
    family_from_version,
    make_driver,
)
from miners.driver import RigDriver, RigError
from tests.miners.sim_support import FAMILY_MIX, FAST, fast_sim


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("antminer/version_s19pro_bmminer.json", "antminer"),
        ("braiins/version_bosminer_plus_s9.json", "braiins"),
        ("luxos/version_s19kpro.json", "luxos"),
        ("avalon/version.json", "avalon"),
        ("whatsminer/get_version.json", "whatsminer"),
        ("whatsminer/summary_m31s_btminer.json", "whatsminer"),  # Description "btminer"
        ("innosilicon/summary_a9.json", None),  # innominer: not a family we drive
    ],
)
def test_family_from_captured_replies(miner_responses: Path, path: str, family: str | None) -> None:
    reply = json.loads((miner_responses / path).read_text())
    assert family_from_version(reply) == family


def test_family_from_devdetails() -> None:
    assert family_from_devdetails({"DEVDETAILS": [{"Driver": "avalon10", "Model": ""}]}) == "avalon"
    assert family_from_devdetails({"DEVDETAILS": [{"Driver": "bitmain_soc"}]}) == "antminer"
    assert family_from_devdetails({"DEVDETAILS": [{"Driver": "other"}]}) is None


async def test_every_simulated_family_is_detected() -> None:
    async with fast_sim(FAMILY_MIX) as sim:
        found = {}
        for rig in sim.rigs:
            port = rig.port if rig.port is not None else rig.http_port
            assert port
            found[rig.family] = await detect_family(rig.host, port, rig.http_port or 1, timeout=1.0)
        wm = next(r for r in sim.rigs if r.family == "whatsminer")
        # API v3 only: the 4028 port is closed, so detection falls through to the v3 probe
        v3 = await detect_family(wm.host, 1, 1, v3_port=wm.v3_port, timeout=1.0)
    assert found == {f: f for f in FAMILY_MIX}
    assert v3 == "whatsminer_v3"


async def test_make_driver_detects_and_drives() -> None:
    async with fast_sim(["luxos", "bitaxe"]) as sim:
        lux, axe = sim.rigs
        assert lux.port and axe.http_port
        d1 = await make_driver(lux.host, lux.port, timeouts=FAST)
        d2 = await make_driver(axe.host, axe.http_port, timeouts=FAST)
        st1, st2 = await d1.status(), await d2.status()
    assert isinstance(d1, RigDriver) and d1.family == "luxos" and st1.state == "hashing"
    assert d2.family == "bitaxe" and st2.model == "Bitaxe Supra"


async def test_nothing_known_answering_is_a_clear_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await detect_family("127.0.0.1", port, port, timeout=0.5) is None
        with pytest.raises(RigError, match="no known firmware answered"):
            await make_driver("127.0.0.1", port, http_port=port, timeouts=FAST, v3_port=port)
    finally:
        server.close()
        await server.wait_closed()


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown rig family 'foo'"):
        driver_for("foo", "127.0.0.1")
