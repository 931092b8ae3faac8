"""The gateway against simulated rigs: poll into the store, then reconcile to plan and overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from controller.clock import hour_floor
from controller.config import FarmConfig, parse_config
from controller.gateway import Gateway
from controller.mqtt.tables import RigTelemetry
from controller.tables import Override, PlanSlot, RigControl, RigRecord
from miners.sim.simulator import Simulator


def _config(tmp_path: Path, sim: Simulator) -> FarmConfig:
    rigs = [
        {
            "name": f"rig-{i}",
            "site": "west",
            "rack": "rack-a" if i < 2 else "rack-b",
            "address": f"127.0.0.1:{rig.port}",
            "family": rig.family,
            "http_port": rig.http_port,
        }
        for i, rig in enumerate(sim.rigs)
    ]
    raw = {
        "farm": {"name": "test", "data_dir": str(tmp_path / "var")},
        "sites": [{"id": "west", "racks": [{"id": "rack-a"}, {"id": "rack-b"}]}],
        "rigs": rigs,
        "planner": {"stagger_batch": 2, "stagger_delay_s": 0.05},
        "metrics": {"enabled": False},
    }
    return parse_config(raw, tmp_path / "farm.toml")


@pytest.fixture
async def farm(tmp_path: Path):  # type: ignore[no-untyped-def]
    sim = Simulator({"antminer": 3}, ramp_up_s=0.2, ramp_down_s=0.1)
    await sim.start()
    gateway = Gateway(_config(tmp_path, sim), base_dir=tmp_path)
    await gateway.start()
    try:
        yield sim, gateway
    finally:
        await gateway.close()
        await sim.stop()


async def test_poll_stores_telemetry_and_learns_macs(farm) -> None:  # type: ignore[no-untyped-def]
    sim, gateway = farm
    statuses = await gateway.poll()
    assert [s.state for s in statuses] == ["hashing"] * 3
    assert gateway.state.statuses["rig-0"].serial == sim.rigs[0].serial
    assert gateway.state.statuses["rig-0"].hashrate_ths == pytest.approx(110.0, rel=0.05)
    with gateway.sessions() as session:
        assert session.scalar(select(func.count()).select_from(RigTelemetry)) == 3
        seen = dict(session.execute(select(RigRecord.name, RigRecord.last_seen)).tuples().all())
        macs = dict(session.execute(select(RigRecord.name, RigRecord.mac)).tuples().all())
    assert all(seen[f"rig-{i}"] is not None for i in range(3))
    # The inventory keeps whatever identity the firmware reveals (stock Antminer RPC has no MAC).
    assert macs == {name: s.mac for name, s in gateway.state.statuses.items()}


async def test_reconcile_follows_plan_then_override_wins(farm) -> None:  # type: ignore[no-untyped-def]
    sim, gateway = farm
    await gateway.poll()
    now = gateway.clock.now()
    hour = hour_floor(now)
    with gateway.sessions.begin() as session:
        for name in ("rig-0", "rig-2"):
            session.add(
                PlanSlot(
                    rig=name, hour_start=hour, desired="curtailed", plan_id="p1", created_at=now
                )
            )
    report = await gateway.reconcile()
    assert sorted(report.curtailed) == ["rig-0", "rig-2"] and report.failed == {}
    assert sim.rigs[0].mode == "curtailed" and sim.rigs[1].mode == "hashing"
    assert gateway.state.statuses["rig-0"].state == "curtailed"
    # An operator override on rack-a (rig-0, rig-1) wins over the plan for its window.
    with gateway.sessions.begin() as session:
        session.add(
            Override(
                target_kind="rack",
                target="rack-a",
                desired="hashing",
                starts_at=now - timedelta(minutes=1),
                ends_at=now + timedelta(hours=1),
                source="cli",
                reason="test",
                created_at=now,
            )
        )
    await gateway.poll()
    report = await gateway.reconcile()
    assert report.resumed == ["rig-0"] and report.curtailed == []
    assert report.in_step == 2
    assert sim.rigs[0].mode == "hashing" and sim.rigs[2].mode == "curtailed"
    with gateway.sessions() as session:
        controls = {c.rig: (c.desired, c.status) for c in session.scalars(select(RigControl))}
    assert controls["rig-0"] == ("hashing", "ok") and controls["rig-2"] == ("curtailed", "ok")


async def test_offline_rig_is_skipped_and_retention_deletes_old_rows(farm) -> None:  # type: ignore[no-untyped-def]
    sim, gateway = farm
    sim.set_fault(1, "reset")
    await gateway.poll()
    assert gateway.state.statuses["rig-1"].state == "offline"  # connection reset: not readable
    assert gateway.state.statuses["rig-1"].hashrate_ths is None
    report = await gateway.reconcile()
    assert report.skipped_offline == ["rig-1"]
    old = datetime.now(UTC) - timedelta(days=400)
    with gateway.sessions.begin() as session:
        session.add(
            RigTelemetry(
                msg_id="old", time=old, received_at=old, site="west", rig="rig-0", state="hashing"
            )
        )
    deleted = gateway.housekeeping()
    assert deleted["rig_telemetry"] == 1
