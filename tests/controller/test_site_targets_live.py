"""Site power targets on real simulated rigs: the gateway curtails the right rigs and acks the
kW they draw; over a real mosquitto a target on the topic is applied once and acked."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from sqlalchemy import func, select

from controller.config import FarmConfig, parse_config
from controller.gateway import Gateway
from controller.mqtt_service import MqttService
from controller.site_targets import SitePowerTarget, cancel_target, store_target
from controller.tables import Override, SitePowerTargetRow
from miners.sim.simulator import Simulator
from tests.support.mosquitto import MosquittoBroker

MODELS = {"braiins": "Antminer S9", "antminer": "Antminer S19 Pro", "luxos": "Antminer S19k Pro"}
# rig-0 S9 (98 J/TH, 1,323 W), rig-1 and rig-2 S19 Pro (29.5, 3,250 W), rig-3 S19k Pro (23, 2,760 W)
FLEET = ["braiins", "antminer", "antminer", "luxos"]


def _config(tmp_path: Path, sim: Simulator, mqtt_port: int | None = None) -> FarmConfig:
    rigs = [
        {
            "name": f"rig-{i}",
            "site": "west",
            "address": f"127.0.0.1:{rig.port}",
            "family": rig.family,
            "http_port": rig.http_port,
            "model": MODELS[rig.family],
        }
        for i, rig in enumerate(sim.rigs)
    ]
    raw: dict[str, Any] = {
        "farm": {"name": "targets", "data_dir": str(tmp_path / "var")},
        "sites": [{"id": "west"}],
        "rigs": rigs,
        "planner": {"stagger_batch": 2, "stagger_delay_s": 0.05},
        "metrics": {"enabled": False},
        "mqtt": {"enabled": mqtt_port is not None, "port": mqtt_port or 1883, "client_id": "gw-t"},
    }
    return parse_config(raw, tmp_path / "farm.toml")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(FLEET, ramp_up_s=0.2, ramp_down_s=0.1)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


def _target(target_id: str, now: datetime, **kw: Any) -> SitePowerTarget:
    body = {
        "id": target_id,
        "site": "west",
        "mode": "to_kw",
        "kw": 7.5,
        "start": (now - timedelta(seconds=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "issuer": "central",
        "issued_at": now.isoformat(),
    } | kw
    return SitePowerTarget.model_validate(body)


def _site_kw(gateway: Gateway) -> float:
    return sum(s.power_w or 0.0 for s in gateway.state.statuses.values()) / 1000


async def test_target_curtails_least_efficient_rigs_and_acks_their_power(
    tmp_path: Path, sim: Simulator
) -> None:
    gateway = Gateway(_config(tmp_path, sim), base_dir=tmp_path)
    await gateway.start()
    try:
        await gateway.poll()
        assert _site_kw(gateway) == pytest.approx(10.583, abs=0.05)
        now = gateway.clock.now()
        with gateway.sessions.begin() as session:
            store_target(session, _target("t-cap", now), ["west"], source="cli", now=now)
        # 10.58 kW against a 7.5 kW cap: the S9, then one S19 Pro (same bucket: by name).
        report = await gateway.reconcile()
        assert sorted(report.curtailed) == ["rig-0", "rig-1"] and report.failed == {}
        assert [r.mode for r in sim.rigs] == ["curtailed", "curtailed", "hashing", "hashing"]
        await asyncio.sleep(0.3)  # past the simulated ramp-down
        await gateway.poll()
        measured = _site_kw(gateway)
        assert measured == pytest.approx(3.25 + 2.76, abs=0.1)  # S9 asleep draws its standby
        with gateway.sessions() as session:
            row = session.get(SitePowerTargetRow, "t-cap")
            assert row is not None
            assert row.state == "met" and row.achieved_kw == pytest.approx(measured, abs=0.01)
            assert row.baseline_kw == pytest.approx(10.583, abs=0.05) and row.cap_kw == 7.5
        assert gateway.site_targets.in_force["west"].cap_now_kw == 7.5
        registry = gateway.metrics.registry
        assert registry.get_sample_value("farmctl_site_power_target_kw", {"site": "west"}) == 7.5
        achieved = registry.get_sample_value(
            "farmctl_site_power_target_achieved_kw", {"site": "west"}
        )
        assert achieved == pytest.approx(measured, abs=0.01)
        # An operator keeps the S9 hashing: it resumes, and the cap keeps the S19 Pro asleep
        # (1.32 + 3.25 + 2.76 = 7.33 kW) rather than curtail the efficient S19k.
        with gateway.sessions.begin() as session:
            session.add(
                Override(
                    target_kind="rig",
                    target="rig-0",
                    desired="hashing",
                    starts_at=now,
                    ends_at=now + timedelta(hours=1),
                    source="cli",
                    reason="test",
                    created_at=now,
                )
            )
        report = await gateway.reconcile()
        assert report.resumed == ["rig-0"] and report.curtailed == []
        assert [r.mode for r in sim.rigs] == ["hashing", "curtailed", "hashing", "hashing"]
        # Cancelled: the plan (no plan: hash) governs again, and the ack says ended.
        assert cancel_target(gateway.sessions, "t-cap")
        report = await gateway.reconcile()
        assert report.resumed == ["rig-1"]
        with gateway.sessions() as session:
            row = session.get(SitePowerTargetRow, "t-cap")
            assert row is not None and row.state == "ended" and row.state_reason == "cancelled"
        assert "west" not in gateway.site_targets.in_force
        assert registry.get_sample_value("farmctl_site_power_target_kw", {"site": "west"}) is None
    finally:
        await gateway.close()


class _AckCollector:
    """Every message on the site's ack topic, in order (a central planner's view)."""

    def __init__(self, port: int, topic: str) -> None:
        self.acks: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="planner", protocol=paho.MQTTv5
        )

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            with self.lock:
                self.acks.append(json.loads(msg.payload))

        self.client.on_message = on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(5), "planner did not subscribe"

    def publish(self, topic: str, body: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)

    def states(self, target_id: str) -> list[str]:
        with self.lock:
            return [a["state"] for a in self.acks if a["target_id"] == target_id]

    async def wait_for(self, target_id: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [
                    a for a in self.acks if a["target_id"] == target_id and a["state"] == state
                ]
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {state} ack for {target_id}; got {self.acks}")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.mqtt
async def test_target_over_mqtt_is_applied_once_and_acked(
    tmp_path: Path, sim: Simulator, mosquitto: MosquittoBroker
) -> None:
    gateway = Gateway(_config(tmp_path, sim, mosquitto.port), base_dir=tmp_path)
    service = MqttService(gateway)
    await gateway.start()
    service.start()
    planner = _AckCollector(mosquitto.port, "farmctl/west/power_target/ack")
    try:
        await asyncio.to_thread(service.client.wait_ready, 10)
        await gateway.poll()
        now = datetime.now(UTC)
        body = _target("cp-1", now, kw=8.0).model_dump(mode="json")
        planner.publish("farmctl/west/power_target", body)
        # Stored, acked pending, applied at once (no waiting for the reconcile minute).
        await planner.wait_for("cp-1", "pending")
        applied = await planner.wait_for("cp-1", "met")
        assert [r.mode for r in sim.rigs] == ["curtailed", "curtailed", "hashing", "hashing"]
        assert applied["cap_kw"] == 8.0 and applied["requested_kw"] == 8.0
        assert applied["achieved_kw"] == pytest.approx(_site_kw(gateway), abs=0.01)
        assert applied["achieved_kw"] <= 8.0 and applied["curtailed_rigs"] == 2
        # A duplicate delivery (the planner re-sends after a lost PUBACK) changes nothing.
        acks_before = len(planner.acks)
        with gateway.sessions() as session:
            applied_at = session.scalar(select(SitePowerTargetRow.applied_at))
        planner.publish("farmctl/west/power_target", body)
        deadline = time.monotonic() + 10
        while service.target_duplicates < 1:
            assert time.monotonic() < deadline, "duplicate never reached the gateway"
            await asyncio.sleep(0.05)
        report = await gateway.reconcile()
        assert report.curtailed == [] and report.resumed == []
        await asyncio.sleep(0.5)
        assert len(planner.acks) == acks_before
        with gateway.sessions() as session:
            assert session.scalar(select(func.count()).select_from(SitePowerTargetRow)) == 1
            assert session.scalar(select(SitePowerTargetRow.applied_at)) == applied_at
        # A target that cannot apply is refused on the ack topic with the reason.
        planner.publish("farmctl/west/power_target", body | {"id": "cp-2", "kw": -5})
        rejected = await planner.wait_for("cp-2", "rejected")
        assert "kw: Input should be greater than or equal to 0" in rejected["reason"]
        assert planner.states("cp-1") == ["pending", "met"]
    finally:
        planner.stop()
        service.stop()
        await gateway.close()
