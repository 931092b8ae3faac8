"""Stock Antminer driver against the simulated S19 Pro (RPC + digest-auth web API)."""

from __future__ import annotations

import logging

import pytest

from miners.credentials import RigCredentials
from miners.driver import RigDriver, RigError, RigUnsupportedAction
from miners.drivers.antminer import AntminerDriver
from miners.sim import Simulator
from tests.miners.sim_support import FAST, fast_sim


def driver(sim: Simulator, password: str | None = None, index: int = 0) -> AntminerDriver:
    rig = sim.rigs[index]
    creds = RigCredentials.of("root", password) if password is not None else None
    assert rig.port and rig.http_port
    return AntminerDriver(
        rig.host, rig.port, http_port=rig.http_port, credentials=creds, timeouts=FAST
    )


async def test_status_reads_rpc_and_web_identity() -> None:
    async with fast_sim(["antminer"]) as sim:
        d = driver(sim)
        st = await d.status()
    rig = sim.rigs[0]
    assert isinstance(d, RigDriver)
    assert st.state == "hashing"
    assert st.hashrate_ths == pytest.approx(110.0)
    assert st.model == "Antminer S19 Pro" and st.make == "Bitmain"
    assert st.mac == rig.mac and st.serial == rig.serial and st.hostname == rig.hostname
    assert [b.chips for b in st.boards] == [114, 114, 114]
    assert len(st.fans_rpm) == 4 and min(st.fans_rpm) > 0
    assert st.pools[0].url == "stratum+tcp://btc.pool.example:3333"
    assert st.last_seen is not None
    assert d.multi_command is False  # learned from the STATUS E reply to summary+stats+...


async def test_curtail_then_resume_verified_by_reading_back() -> None:
    async with fast_sim(["antminer"]) as sim:
        d = driver(sim)
        await d.curtail()
        assert sim.rigs[0].mode == "curtailed"
        st = await d.status()
        assert st.state == "curtailed"
        assert "bitmain-work-mode 1" in (st.state_reason or "")
        await d.verify("ramp", lambda s: s.hashrate_ths == 0.0, "0 TH/s")
        asleep = await d.status()
        await d.resume()
        await d.verify("ramp", lambda s: (s.hashrate_ths or 0) >= 109.9, "110 TH/s")
        back = await d.status()
    assert asleep.state == "curtailed" and asleep.fans_rpm == [0, 0, 0, 0]
    assert back.state == "hashing" and back.hashrate_ths == pytest.approx(110.0)


async def test_power_target_refused_with_reason() -> None:
    async with fast_sim(["antminer"]) as sim:
        d = driver(sim)
        with pytest.raises(RigUnsupportedAction, match="no power limit"):
            await d.set_power_target(3000)
        with pytest.raises(RigUnsupportedAction, match="cannot restart mining"):
            await d.restart_mining()


async def test_reboot_verified() -> None:
    async with fast_sim(["antminer"]) as sim:
        d = driver(sim)
        await d.reboot()
        await d.verify("boot", lambda s: s.state == "hashing", "back up")
        st = await d.status()
    assert st.uptime_s is not None and st.uptime_s < 60


async def test_wrong_password_refuses_curtail_but_status_still_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with fast_sim(["antminer"], passwords={"antminer": "Rig-Secret-77"}) as sim:
        d = driver(sim, password="not-the-one-42")
        st = await d.status()
        with pytest.raises(RigError, match="login refused"):
            await d.curtail()
        good = driver(sim, password="Rig-Secret-77")
        await good.curtail()
        after = await good.status()
    assert st.state == "hashing" and st.mac is None  # web identity refused, RPC still fine
    assert after.state == "curtailed"
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "Rig-Secret-77" not in text and "not-the-one-42" not in text
    assert "factory default password" not in text


async def test_default_password_warns_once_without_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with fast_sim(["antminer"]) as sim:
        d = driver(sim)
        await d.status()
        await d.status()
    warnings = [r for r in caplog.records if "factory default password" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert sim.rigs[0].name in warnings[0].getMessage()
    assert "root:root" not in caplog.text and "password=root" not in caplog.text
