"""Every simulated fault gives an offline/error status with a clear reason, never an exception."""

from __future__ import annotations

import pytest

from miners.detect import driver_for
from miners.drivers.base import BaseDriver, DriverTimeouts
from miners.sim import Fault, SimRig
from tests.miners.sim_support import fast_sim

# Read deadline well under the slow drip (4 bytes every 0.5 s) and the hang.
QUICK = DriverTimeouts(connect_s=0.5, read_s=0.4, verify_s=1.0, verify_interval_s=0.05)


def make(rig: SimRig) -> BaseDriver:
    port = rig.port if rig.port is not None else 4028
    return driver_for(rig.family, rig.host, port, http_port=rig.http_port or 80, timeouts=QUICK)


TRANSPORT = [
    (Fault.HANG, "offline", "no complete reply"),
    (Fault.SLOW_DRIP, "offline", "no complete reply"),
    (Fault.RESET, "offline", "reset"),
    (Fault.GARBAGE, "error", ""),
]


@pytest.mark.parametrize("family", ["antminer", "whatsminer", "luxos", "bitaxe"])
@pytest.mark.parametrize(("fault", "state", "reason"), TRANSPORT)
async def test_transport_faults_never_raise_and_keep_identity(
    family: str, fault: Fault, state: str, reason: str
) -> None:
    async with fast_sim([family]) as sim:
        rig = sim.rigs[0]
        d = make(rig)
        good = await d.status()
        sim.set_fault(rig, fault)
        bad = await d.status()
    assert good.state == "hashing"
    if family == "bitaxe" and fault is Fault.GARBAGE:
        state = "offline"  # garbage where an HTTP status line should be: no web server there
    assert bad.state == state, bad.state_reason
    assert bad.state_reason and reason in bad.state_reason
    assert rig.host in bad.state_reason  # the reason names the rig
    assert bad.errors == [bad.state_reason]
    assert bad.last_seen == good.last_seen  # last good read kept, not refreshed
    assert (bad.mac, bad.model) == (good.mac, good.model)
    assert bad.hashrate_ths is None and bad.power_w is None  # no stale values


@pytest.mark.parametrize("family", ["antminer", "whatsminer", "luxos", "avalon", "braiins"])
async def test_malformed_json_is_repaired_not_fatal(family: str) -> None:
    async with fast_sim([family]) as sim:
        sim.set_fault(0, Fault.MALFORMED_JSON)
        st = await make(sim.rigs[0]).status()
    assert st.state == "hashing", st.state_reason
    assert st.hashrate_ths is not None and st.hashrate_ths > 0


async def test_bitaxe_malformed_json_is_repaired_too() -> None:
    async with fast_sim(["bitaxe"]) as sim:
        sim.set_fault(0, Fault.MALFORMED_JSON)
        st = await make(sim.rigs[0]).status()
    assert st.state == "hashing", st.state_reason
    assert st.hashrate_ths == pytest.approx(0.65)


@pytest.mark.parametrize("family", ["antminer", "whatsminer", "luxos", "avalon"])
async def test_overheat_is_an_error_with_the_temperature(family: str) -> None:
    async with fast_sim([family]) as sim:
        sim.set_fault(0, Fault.OVERHEAT)
        st = await make(sim.rigs[0]).status()
    assert st.state == "error", st.state_reason
    assert st.hashrate_ths == 0.0
    assert st.state_reason and ("overheating" in st.state_reason or "chips" in st.state_reason)
    assert max(b.temp_c or 0 for b in st.boards) >= 88


async def test_dead_fan_missing_board_foreign_pool_show_in_status() -> None:
    async with fast_sim(["antminer"] * 3) as sim:
        fan, board, pool = sim.rigs
        sim.set_fault(fan, Fault.DEAD_FAN)
        sim.set_fault(board, Fault.MISSING_BOARD)
        sim.set_fault(pool, Fault.FOREIGN_POOL)
        fan_st = await make(fan).status()
        board_st = await make(board).status()
        pool_st = await make(pool).status()
    assert len(fan_st.fans_rpm) == 4 and sorted(fan_st.fans_rpm)[0] == 0  # 3 turning, 1 dead
    # the dead chain reports 0 ASICs: two boards hashing, a third of the nameplate missing
    assert [b.chips for b in board_st.boards] == [114, 114]
    assert board_st.hashrate_ths == pytest.approx(110.0 * 2 / 3, rel=1e-3)
    assert board_st.expected_hashrate_ths == pytest.approx(110.0)
    assert pool_st.pools[0].url == "stratum+tcp://foreign.pool.example:3333"
    assert pool_st.pools[0].user == "thief.worker1"


async def test_unreachable_rig_is_offline() -> None:
    async with fast_sim(["antminer"]) as sim:
        rig = sim.rigs[0]
        d = make(rig)
    st = await d.status()  # the simulator is stopped: connection refused
    assert st.state == "offline"
    assert st.state_reason and "127.0.0.1" in st.state_reason
    assert st.last_seen is None
