"""Every family's driver against its simulated rig: status, curtail/resume, power target, refusals."""

from __future__ import annotations

import pytest

from miners.detect import driver_for
from miners.driver import Capability, RigActionNotVerified, RigUnsupportedAction
from miners.drivers.avalon import AvalonDriver
from miners.drivers.base import BaseDriver
from miners.drivers.bitaxe import BitaxeDriver
from miners.drivers.cgminer import CgminerDriver
from miners.drivers.luxos import LuxosDriver
from miners.drivers.whatsminer import WhatsminerDriver, WhatsminerV3Driver
from miners.sim import SimRig
from miners.sim.catalog import MODELS
from tests.miners.sim_support import FAST, fast_sim


def make(family: str, rig: SimRig) -> BaseDriver:
    if family == "whatsminer_v3":
        assert rig.v3_port
        return WhatsminerV3Driver(rig.host, rig.v3_port, timeouts=FAST)
    port = rig.port if rig.port is not None else 4028
    return driver_for(family, rig.host, port, http_port=rig.http_port or 80, timeouts=FAST)


FAMILIES = [
    "antminer",
    "braiins",
    "whatsminer",
    "whatsminer_v3",
    "avalon",
    "luxos",
    "cgminer",
    "bitaxe",
]
# (family, reports power): what each firmware's status can say about watts
REPORTS_POWER = {"braiins", "whatsminer", "whatsminer_v3", "avalon", "luxos", "bitaxe"}


def sim_family(family: str) -> str:
    return "whatsminer" if family == "whatsminer_v3" else family


@pytest.mark.parametrize("family", FAMILIES)
async def test_status_matches_the_simulated_rig(family: str) -> None:
    async with fast_sim([sim_family(family)]) as sim:
        rig = sim.rigs[0]
        st = await make(family, rig).status()
    model = MODELS[sim_family(family)]
    assert st.state == "hashing", st.state_reason
    assert st.hashrate_ths == pytest.approx(model.nominal_ths, rel=1e-3)
    assert st.pools and st.pools[0].url == rig.pool_url
    assert st.ip == "127.0.0.1" and st.family == family
    if family in REPORTS_POWER:
        assert st.power_w == pytest.approx(model.nominal_w, abs=1.0)
        assert st.efficiency_jth == pytest.approx(model.nominal_w / model.nominal_ths, rel=0.01)
    if family not in ("braiins", "cgminer"):  # their APIs carry no MAC
        assert st.mac == rig.mac


CURTAILABLE = ["antminer", "braiins", "whatsminer", "whatsminer_v3", "avalon", "luxos", "cgminer"]


@pytest.mark.parametrize("family", CURTAILABLE)
async def test_curtail_drops_hashrate_and_power_resume_ramps_back(family: str) -> None:
    async with fast_sim([sim_family(family)]) as sim:
        d = make(family, sim.rigs[0])
        before = await d.status()
        await d.curtail()
        down = await d.verify("settle", lambda s: s.hashrate_ths == 0.0, "0 TH/s")
        await d.resume()
        up = await d.verify(
            "settle", lambda s: (s.hashrate_ths or 0) >= 0.99 * (before.hashrate_ths or 0), "full"
        )
    assert Capability.CURTAIL in d.capabilities
    assert down.state == "curtailed", down.state_reason
    if before.power_w is not None:
        assert down.power_w is not None and down.power_w < 0.05 * before.power_w
    assert up.state == "hashing"
    assert sim.rigs[0].mode == "hashing"


@pytest.mark.parametrize(
    ("family", "target", "expected"),
    [("whatsminer", 3000, 3000.0), ("whatsminer_v3", 2800, 2800.0), ("luxos", 2500, 2484.0)],
)
async def test_power_target_read_back(family: str, target: int, expected: float) -> None:
    async with fast_sim([sim_family(family)]) as sim:
        d = make(family, sim.rigs[0])
        await d.set_power_target(target)
        st = await d.status()
    assert sim.rigs[0].power_limit_w == expected
    assert st.power_w == pytest.approx(expected, abs=1.0)


async def test_luxos_power_target_below_every_profile_is_refused() -> None:
    async with fast_sim(["luxos"]) as sim:
        d = make("luxos", sim.rigs[0])
        with pytest.raises(Exception, match="no LuxOS profile at or under 1000 W"):
            await d.set_power_target(1000)


@pytest.mark.parametrize(
    ("family", "action", "reason"),
    [
        ("bitaxe", "curtail", "AxeOS has no sleep mode"),
        ("bitaxe", "resume", "nothing to resume"),
        ("bitaxe", "set_power_target", "AxeOS has no power limit"),
        ("braiins", "set_power_target", "gRPC/GraphQL"),
        ("braiins", "reboot", "no reboot command"),
        ("avalon", "set_power_target", "work mode"),
        ("cgminer", "reboot", "cannot reboot the host"),
    ],
)
async def test_unsupported_actions_are_refused_clearly(
    family: str, action: str, reason: str
) -> None:
    async with fast_sim([family]) as sim:
        d = make(family, sim.rigs[0])
        args = (3000,) if action == "set_power_target" else ()
        with pytest.raises(RigUnsupportedAction, match=reason) as info:
            await getattr(d, action)(*args)
    assert family in str(info.value)
    assert sim.rigs[0].mode == "hashing" and sim.rigs[0].version == 0  # nothing was sent


async def test_bitaxe_settings_read_back() -> None:
    async with fast_sim(["bitaxe"]) as sim:
        rig = sim.rigs[0]
        assert rig.http_port
        d = BitaxeDriver(rig.host, rig.http_port, timeouts=FAST)
        await d.apply_settings(frequency_mhz=525, core_voltage_mv=1200)
        st = await d.status()
        await d.reboot()
    assert (rig.frequency_mhz, rig.core_voltage_mv) == (525, 1200)
    assert st.hashrate_ths == pytest.approx(0.65 * 525 / 490, rel=1e-3)


async def test_avalon_workmode_and_reboot() -> None:
    async with fast_sim(["avalon"]) as sim:
        rig = sim.rigs[0]
        assert rig.port
        d = AvalonDriver(rig.host, rig.port, timeouts=FAST)
        await d.status()
        assert d.workmode == 1
        await d.set_workmode(0)
        st = await d.status()
        await d.reboot()
    assert d.workmode == 0
    assert st.power_w == pytest.approx(0.75 * 2380, abs=1.0)


async def test_cgminer_restart_and_whatsminer_restart_mining() -> None:
    async with fast_sim(["cgminer", "whatsminer"]) as sim:
        cg, wm = sim.rigs
        assert cg.port and wm.port
        await CgminerDriver(cg.host, cg.port, timeouts=FAST).restart_mining()
        await WhatsminerDriver(wm.host, wm.port, timeouts=FAST).restart_mining()
    assert cg.uptime_s(cg.boot_time + 1) == 1 and cg.down_until > 0 and wm.down_until > 0


async def test_whatsminer_wrong_password_is_refused_and_names_it() -> None:
    from miners.credentials import RigCredentials

    async with fast_sim(["whatsminer"], passwords={"whatsminer": "Mb-Secret-9"}) as sim:
        rig = sim.rigs[0]
        assert rig.port
        wrong = WhatsminerDriver(rig.host, rig.port, timeouts=FAST)  # factory admin/admin
        with pytest.raises(Exception, match="wrong password"):
            await wrong.curtail()
        right = WhatsminerDriver(
            rig.host, rig.port, credentials=RigCredentials.of("admin", "Mb-Secret-9"), timeouts=FAST
        )
        await right.curtail()
    assert rig.mode == "curtailed"


async def test_luxos_session_is_reused_and_renewed() -> None:
    async with fast_sim(["luxos"]) as sim:
        rig = sim.rigs[0]
        assert rig.port
        d = LuxosDriver(rig.host, rig.port, timeouts=FAST)
        sid = await d.session_id()
        other = LuxosDriver(rig.host, rig.port, timeouts=FAST)
        assert await other.session_id() == sid  # one session per rig: the active one is reused
        rig.session_id = "expired0"  # the rig dropped our session
        await d.curtail()
    assert rig.mode == "curtailed" and d._session == "expired0"


async def test_verify_failure_reports_what_was_read() -> None:
    # BOSminer acknowledges `pause` but this rig takes 30 s to spin down: within a 0.3 s verify
    # window the read-back still shows it hashing, so the curtail is reported unconfirmed.
    async with fast_sim(["braiins"], ramp_down_s=30.0) as sim:
        rig = sim.rigs[0]
        d = make("braiins", rig)
        d.timeouts = type(FAST)(connect_s=1, read_s=1, verify_s=0.3, verify_interval_s=0.05)
        with pytest.raises(RigActionNotVerified, match="read back state=hashing") as info:
            await d.curtail()
    assert "expected state=curtailed" in str(info.value)
