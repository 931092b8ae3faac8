"""The simulator on real sockets: real reply layouts, quirks, control, faults, many rigs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import requests
from requests.auth import HTTPDigestAuth

from miners.drivers import btminer_crypto as crypto
from miners.jsonrepair import loads_lenient
from miners.sim import Fault, Simulator, parse_mix
from miners.sim.runner import size_mix
from tests.miners.sim_support import fast_sim


async def exchange(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    """Send raw bytes to a simulated rig and read until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def ask(port: int, command: str) -> dict:
    raw = await exchange(port, json.dumps({"command": command}).encode())
    assert raw.endswith(b"\x00"), "cgminer-family replies end with a NUL"
    return json.loads(raw[:-1])


def keys_of(path: Path, section: str, index: int = 0) -> set[str]:
    return set(json.loads(path.read_text())[section][index])


async def test_antminer_replies_have_the_captured_layout(miner_responses: Path) -> None:
    async with fast_sim(["antminer"]) as sim:
        port = sim.rigs[0].port
        assert port is not None
        summary = await ask(port, "summary")
        stats = await ask(port, "stats")
        pools = await ask(port, "pools")
        version = await ask(port, "version")
        raw = await exchange(port, b'{"command":"summary"}')
    am = miner_responses / "antminer"
    assert set(summary["SUMMARY"][0]) == keys_of(am / "summary_s19pro.json", "SUMMARY")
    assert set(stats["STATS"][1]) == keys_of(am / "stats_s19pro_overheating.json", "STATS", 1)
    assert set(pools["POOLS"][0]) == keys_of(am / "pools_s19_sleeping.json", "POOLS")
    assert set(version["VERSION"][0]) == keys_of(am / "version_s19pro_bmminer.json", "VERSION")
    assert b'"STATUS": [{"STATUS": "S"' in raw  # bmminer's Python-style spacing
    assert summary["SUMMARY"][0]["GHS 5s"] == 110000.0  # S19 Pro nominal 110 TH/s
    assert stats["STATS"][1]["chain_rate1"] == "36666.67"  # chain rates are strings
    assert stats["STATS"][1]["temp_pcb1"].count("-") == 3  # dash-joined sensor strings


async def test_stock_antminer_refuses_multicommand_avalon_accepts_it(miner_responses: Path) -> None:
    async with fast_sim(["antminer", "avalon"]) as sim:
        am, av = sim.rigs
        assert am.port and av.port
        refused = await ask(am.port, "summary+stats")
        joined = await ask(av.port, "summary+stats+pools")
    assert refused["STATUS"][0]["STATUS"] == "E"
    assert refused["STATUS"][0]["Msg"] == "Invalid command"
    captured = json.loads(
        (miner_responses / "avalon/multicommand_pools_summary_stats_a1047.json").read_text()
    )
    assert set(joined) == set(captured)
    assert joined["summary"][0]["SUMMARY"][0]["MHS av"] == 37_000_000.0
    assert "MM ID0" in joined["stats"][0]["STATS"][0]


async def test_text_mode_request_gets_text_reply() -> None:
    async with fast_sim(["avalon"]) as sim:
        port = sim.rigs[0].port
        assert port
        raw = await exchange(port, b"ascset|0,led,1-1")
    assert raw.startswith(b"STATUS=I,When=")
    assert b"Code=118,Msg=ASC 0 set OK" in raw
    assert raw.endswith(b"|\x00")


async def test_cgminer_vnish_stats_keep_the_missing_comma(miner_responses: Path) -> None:
    async with fast_sim(["cgminer"]) as sim:
        port = sim.rigs[0].port
        assert port
        raw = await exchange(port, b'{"command":"stats"}')
    body = raw.rstrip(b"\x00")
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    assert b'"}{"STATS"' in body  # the same '}{' as the captured vnish S9 stats
    repaired, rules = loads_lenient(body)
    assert rules == ["missing_commas"]
    assert repaired["STATS"][1]["ID"] == "BC50"


async def test_antminer_web_api_needs_digest_auth_and_sleeps() -> None:
    async with fast_sim(["antminer"]) as sim:
        rig = sim.rigs[0]
        base = f"http://127.0.0.1:{rig.http_port}/cgi-bin"
        anon = await asyncio.to_thread(requests.get, f"{base}/get_miner_conf.cgi", timeout=3)
        bad = await asyncio.to_thread(
            requests.get,
            f"{base}/get_miner_conf.cgi",
            auth=HTTPDigestAuth("root", "nope"),
            timeout=3,
        )
        ok = await asyncio.to_thread(
            requests.post,
            f"{base}/set_miner_conf.cgi",
            json={"miner-mode": 1},
            auth=HTTPDigestAuth("root", "root"),
            timeout=3,
        )
        conf = await asyncio.to_thread(
            requests.get,
            f"{base}/get_miner_conf.cgi",
            auth=HTTPDigestAuth("root", "root"),
            timeout=3,
        )
        await asyncio.sleep(0.3)
        assert rig.port
        summary = await ask(rig.port, "summary")
    assert anon.status_code == 401
    assert 'realm="antMiner Configuration"' in anon.headers["WWW-Authenticate"]
    assert bad.status_code == 401
    assert ok.json() == {"stats": "success", "code": "M000", "msg": "OK!"}
    assert conf.json()["bitmain-work-mode"] == "1"
    assert summary["SUMMARY"][0]["GHS 5s"] == 0.0


async def test_curtail_ramps_down_and_resume_ramps_back() -> None:
    async with fast_sim(["whatsminer"], ramp_down_s=0.4, ramp_up_s=0.4) as sim:
        rig = sim.rigs[0]
        assert rig.port
        before = (await ask(rig.port, "summary"))["SUMMARY"][0]
        rig.curtail(time.time())
        await asyncio.sleep(0.2)
        mid = (await ask(rig.port, "summary"))["SUMMARY"][0]
        await asyncio.sleep(0.35)
        after = (await ask(rig.port, "summary"))["SUMMARY"][0]
        rig.resume(time.time())
        await asyncio.sleep(0.5)
        back = (await ask(rig.port, "summary"))["SUMMARY"][0]
    assert before["MHS 5s"] == 76_000_000.0 and before["Power"] == 3344
    assert 0 < mid["MHS 5s"] < before["MHS 5s"]
    assert after["MHS 5s"] == 0.0
    assert after["Power"] == 15  # control board standby only
    assert back["MHS 5s"] == before["MHS 5s"] and back["Power"] == 3344


async def test_transport_faults_on_the_wire() -> None:
    async with fast_sim(["antminer"] * 5) as sim:
        hang, reset, garbage, malformed, drip = sim.rigs
        for rig, fault in zip(
            sim.rigs,
            [Fault.HANG, Fault.RESET, Fault.GARBAGE, Fault.MALFORMED_JSON, Fault.SLOW_DRIP],
            strict=True,
        ):
            sim.set_fault(rig, fault)
        req = b'{"command":"summary"}'
        with pytest.raises(TimeoutError):
            await exchange(hang.port or 0, req, timeout=0.3)
        with pytest.raises(ConnectionResetError):
            await exchange(reset.port or 0, req)
        junk = await exchange(garbage.port or 0, req)
        broken = await exchange(malformed.port or 0, req)
        reader, writer = await asyncio.open_connection("127.0.0.1", drip.port)
        writer.write(req)
        first = await asyncio.wait_for(reader.read(100), 1.0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(), 0.6)
        writer.close()
    with pytest.raises(ValueError):
        json.loads(junk.rstrip(b"\x00"))
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.rstrip(b"\x00"))
    repaired, rules = loads_lenient(broken)
    assert "missing_commas" in rules and repaired["SUMMARY"][0]["GHS 5s"] == 110000.0
    assert 0 < len(first) <= 8


async def test_latency_delays_the_reply() -> None:
    async with fast_sim(["braiins"], latency_ms=150) as sim:
        port = sim.rigs[0].port
        assert port
        t0 = time.perf_counter()
        await ask(port, "summary")
        assert time.perf_counter() - t0 >= 0.14


async def test_state_faults_show_in_the_replies() -> None:
    async with fast_sim(["antminer"] * 4) as sim:
        hot, fan, board, pool = sim.rigs
        sim.set_fault(hot, "overheat")
        sim.set_fault(fan, "dead_fan")
        sim.set_fault(board, "missing_board")
        sim.set_fault(pool, "foreign_pool")
        hot_stats = (await ask(hot.port or 0, "stats"))["STATS"][1]
        fan_stats = (await ask(fan.port or 0, "stats"))["STATS"][1]
        board_stats = (await ask(board.port or 0, "stats"))["STATS"][1]
        pools = (await ask(pool.port or 0, "pools"))["POOLS"]
    assert hot_stats["GHS 5s"] == 0.0 and hot_stats["temp1"] >= 88
    assert hot_stats["chain_acs1"].strip().startswith("xxx")
    assert fan_stats["fan1"] == 0 and fan_stats["fan2"] > 0
    assert board_stats["chain_acn3"] == 0 and board_stats["chain_acn1"] == 114
    assert pools[0]["URL"] == "stratum+tcp://foreign.pool.example:3333"


async def test_reboot_takes_the_rig_down_then_back_with_fresh_uptime() -> None:
    async with fast_sim(["luxos"], reboot_s=0.3) as sim:
        rig = sim.rigs[0]
        assert rig.port
        before = (await ask(rig.port, "summary"))["SUMMARY"][0]["Elapsed"]
        rig.reboot(time.time())
        with pytest.raises(ConnectionResetError):
            await exchange(rig.port, b'{"command":"summary"}')
        await asyncio.sleep(0.4)
        after = (await ask(rig.port, "summary"))["SUMMARY"][0]["Elapsed"]
    assert before >= 3600 and after < 5


async def test_whatsminer_privileged_command_needs_token_and_password() -> None:
    async with fast_sim(["whatsminer"]) as sim:
        rig = sim.rigs[0]
        assert rig.port
        token = json.loads((await exchange(rig.port, b'{"cmd":"get_token"}')).rstrip(b"\x00"))
        msg = token["Msg"]
        md5, sign = crypto.v2_token("admin", msg["time"], msg["salt"], msg["newsalt"])
        key = crypto.aes_key(md5)
        packet = {"enc": 1, "data": crypto.encrypt(key, {"cmd": "power_off", "token": sign})}
        reply = json.loads((await exchange(rig.port, json.dumps(packet).encode())).rstrip(b"\x00"))
        wrong_md5, wrong_sign = crypto.v2_token("guess", msg["time"], msg["salt"], msg["newsalt"])
        wrong = {
            "enc": 1,
            "data": crypto.encrypt(
                crypto.aes_key(wrong_md5), {"cmd": "power_on", "token": wrong_sign}
            ),
        }
        refused = json.loads((await exchange(rig.port, json.dumps(wrong).encode())).rstrip(b"\x00"))
        status = json.loads((await exchange(rig.port, b'{"command":"status"}')).rstrip(b"\x00"))
    assert token["Code"] == 134 and set(msg) == {"time", "salt", "newsalt"}
    assert crypto.decrypt(key, reply["enc"])["Msg"] == "API command OK"
    assert refused["STATUS"] == "E" and refused["Msg"] == "json error"
    assert status["Msg"]["mineroff"] == "true"  # the wrong-password power_on did nothing


def test_parse_mix_and_size_mix() -> None:
    assert parse_mix("antminer=3, whatsminer=1") == {"antminer": 3, "whatsminer": 1}
    with pytest.raises(ValueError, match="bad mix entry 'foo=2'"):
        parse_mix("foo=2")
    with pytest.raises(ValueError, match="bad count"):
        parse_mix("antminer=x")
    sized = size_mix({"antminer": 4, "whatsminer": 2, "bitaxe": 1}, 5000)
    assert sum(sized.values()) == 5000
    assert sized == {"antminer": 2857, "whatsminer": 1429, "bitaxe": 714}


async def test_many_rigs_distinct_ports_and_identities() -> None:
    sim = Simulator({"antminer": 300, "whatsminer": 100, "bitaxe": 50})
    await sim.start()
    try:
        ports = [p for r in sim.rigs for p in (r.port, r.http_port, r.v3_port) if p]
        manifest = sim.manifest()
        replies = await asyncio.gather(*(ask(r.port, "summary") for r in sim.rigs[::37] if r.port))
    finally:
        await sim.stop()
    assert len(ports) == len(set(ports)) == 300 * 2 + 100 * 2 + 50
    assert len({r["mac"] for r in manifest["rigs"]}) == 450
    assert all(r["SUMMARY"][0]["Elapsed"] > 0 for r in replies)
