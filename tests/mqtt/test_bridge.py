"""The controller's bridge: status, totals, plan, HA discovery, operator commands and acks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from controller.mqtt.bridge import BridgeSettings, CommandResult, MqttBridge, totals
from controller.mqtt.client import MqttClient
from controller.mqtt.outbox import OutboxDispatcher
from controller.mqtt.schemas import CurtailCommand, OverrideCommand, ResumeCommand
from miners.status import BoardStatus, RigStatus
from tests.mqtt.conftest import Collector, settings_for
from tests.support.mosquitto import MosquittoBroker
from tests.support.waiting import wait_for

Command = CurtailCommand | ResumeCommand | OverrideCommand


@dataclass
class Recorder:
    """A command handler that records what it was asked and refuses unknown racks."""

    commands: list[Command] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, command: Command) -> CommandResult:
        with self.lock:
            self.commands.append(command)
        if command.target.kind == "rack" and command.target.id != "rack-1":
            return CommandResult(False, f"no rack {command.target.id!r}")
        return CommandResult(True, detail={"rigs": 1 if command.target.kind == "rig" else 12})


@pytest.fixture
def stack(
    mosquitto: MosquittoBroker, engine: sa.Engine
) -> Iterator[tuple[MqttBridge, Recorder, Collector]]:
    settings = BridgeSettings(ha_prefix="ha-test", gateway="gw-test")
    client = MqttClient(
        settings_for(mosquitto.port, "controller-bridge"), will=MqttBridge.will(settings)
    )
    outbox = OutboxDispatcher(engine, client)
    recorder = Recorder()
    bridge = MqttBridge(client, engine, outbox, recorder, settings, locate=LOCATE.get)
    collector = Collector(mosquitto.port, "farmctl/#", "ha-test/#")
    client.start()
    outbox.start()
    client.wait_ready()
    yield bridge, recorder, collector
    bridge.close()
    outbox.stop()
    client.stop()
    collector.close()


# where the config puts each rig and rack (`MqttService.locate`); rack-dup is at two sites
PLACES = {
    ("rig", "rig-07"): {"site-a"},
    ("rack", "rack-1"): {"site-a"},
    ("rack", "rack-2"): {"site-b"},
    ("rack", "rack-dup"): {"site-a", "site-b"},
}


class _Locate:
    def get(self, kind: str, target: str) -> set[str]:
        return PLACES.get((kind, target), set())


LOCATE = _Locate()

S19 = RigStatus(
    mac="02:aa:00:00:00:07",
    make="Bitmain",
    model="Antminer S19j Pro",
    firmware="sim-agent 1.0",
    state="hashing",
    hashrate_ths=100.0,
    power_w=3050.0,
    power_source="meter",
    efficiency_jth=30.5,
    boards=[BoardStatus(0, 33.3, 61.0, 74.5), BoardStatus(1, 33.3, 63.5, 76.0)],
)


def test_status_totals_plan_and_home_assistant_discovery(
    stack: tuple[MqttBridge, Recorder, Collector],
) -> None:
    bridge, _recorder, collector = stack
    assert bridge.publish_status("site-a", "rig-07", S19)
    curtailed = RigStatus(state="curtailed", hashrate_ths=0.0, power_w=15.0)
    assert bridge.publish_status("site-a", "rig-08", curtailed)
    bridge.publish_status("site-b", "rig-01", RigStatus(state="offline"))
    farm = bridge.publish_totals(
        {
            ("site-a", "rig-07"): S19,
            ("site-a", "rig-08"): curtailed,
            ("site-b", "rig-01"): RigStatus(),
        }
    )
    assert farm["rigs"] == 3 and farm["sites"] == 2
    assert farm["hashrate_ths"] == 100.0 and farm["power_w"] == 3065.0
    assert farm["efficiency_jth"] == 30.65
    assert bridge.publish_plan(
        "site-a", {"hours": [{"start": "2026-11-23T14:00:00Z", "hashing": ["site-a/rig-07"]}]}
    )

    state = wait_for(lambda: collector.json("farmctl/site-a/rig/rig-07/state"), what="rig state")[0]
    assert (
        state["state"] == "hashing"
        and state["power_w"] == 3050.0
        and state["power_source"] == "meter"
    )
    assert state["temp_c_max"] == 63.5 and state["chip_temp_c_max"] == 76.0
    site_a = wait_for(lambda: collector.json("farmctl/site-a/totals"), what="site totals")[0]
    assert (
        site_a["rigs"] == 2 and site_a["states"]["curtailed"] == 1 and site_a["power_w"] == 3065.0
    )
    wait_for(lambda: collector.json("farmctl/site-a/plan"), what="site plan")
    # every site and farm topic of one gateway: nothing another gateway would overwrite
    farm_totals = wait_for(lambda: collector.json("farmctl/totals"), what="farm totals")[0]
    assert farm_totals["rigs"] == 3 and farm_totals["sites"] == 2
    online = "farmctl/gateway/gw-test/availability"
    assert wait_for(
        lambda: collector.messages and [p for t, p in collector.messages if t == online]
    ) == [b"online"]
    with collector.lock:
        bare = {t for t, _ in collector.messages} & {"farmctl/plan", "farmctl/availability"}
    assert bare == set()

    configs = wait_for(
        lambda: len(collector.json("ha-test/#")) >= 14 and collector.json("ha-test/#"), what="HA"
    )
    by_id = {c["unique_id"]: c for c in configs}
    power = by_id["farmctl_site-a_rig-07_power"]
    assert power["device_class"] == "power" and power["unit_of_measurement"] == "W"
    assert power["state_topic"] == "farmctl/site-a/rig/rig-07/state"
    assert power["value_template"] == "{{ value_json.power_w }}"
    assert power["device"]["connections"] == [["mac", "02:aa:00:00:00:07"]]
    assert power["device"]["model"] == "Antminer S19j Pro"
    assert power["availability"] == [{"topic": online}]
    assert by_id["farmctl_site-a_rig-07_hashrate"]["unit_of_measurement"] == "TH/s"
    assert by_id["farmctl_site-a_rig-07_temperature"]["device_class"] == "temperature"
    assert "offline" in by_id["farmctl_site-a_rig-07_state"]["options"]
    switch = by_id["farmctl_site-a_rig-07_hashing"]
    assert switch["command_topic"] == "farmctl/site-a/rig/rig-07/hashing/set"
    with collector.lock:
        retained_topics = {t for t, _ in collector.messages}
    assert "ha-test/switch/farmctl_site-a_rig-07/hashing/config" in retained_topics
    # announced once per rig, not on every status
    before = len(collector.json("ha-test/#"))
    bridge.publish_status("site-a", "rig-07", S19)
    wait_for(
        lambda: len(collector.json("farmctl/site-a/rig/rig-07/state")) == 2, what="second state"
    )
    assert len(collector.json("ha-test/#")) == before


def test_totals_of_an_empty_fleet() -> None:
    assert totals([]) == {
        "rigs": 0,
        "states": {"hashing": 0, "curtailed": 0, "idle": 0, "offline": 0, "error": 0},
        "hashrate_ths": 0.0,
        "power_w": 0.0,
        "efficiency_jth": None,
    }


def _send(
    collector: Collector, payload: bytes | dict[str, object], topic: str = "farmctl/site-a/cmd"
) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    collector.client.publish(topic, body, qos=1).wait_for_publish(5)


def test_operator_commands_validated_executed_once_and_acked(
    stack: tuple[MqttBridge, Recorder, Collector],
) -> None:
    bridge, recorder, collector = stack
    curtail: dict[str, object] = {
        "id": "op-1",
        "action": "curtail",
        "target": {"kind": "rack", "id": "rack-1", "site": "site-a"},
    }
    _send(collector, curtail)
    _send(collector, curtail)  # the same id again (a retry, a redelivery): executed once
    _send(collector, {"id": "op-2", "action": "resume", "target": {"kind": "rack", "id": "rack-9"}})
    _send(
        collector,
        {
            "id": "op-3",
            "action": "override",
            "target": {"kind": "site", "id": "site-a"},
            "state": "curtailed",
            "start": "2026-11-23T17:00:00Z",
            "end": "2026-11-23T20:00:00Z",
        },
    )
    _send(
        collector,
        {
            "id": "op-4",
            "action": "override",
            "target": {"kind": "site", "id": "site-a"},
            "state": "curtailed",
            "start": "2026-11-23T20:00:00Z",
            "end": "2026-11-23T17:00:00Z",
        },
    )
    _send(collector, {"id": "op-5", "action": "explode", "target": {"kind": "rig", "id": "r"}})
    _send(collector, {"id": "op-6", "action": "curtail", "target": {"kind": "rig", "id": "a/b"}})
    _send(collector, b"{not json")
    _send(collector, b"x" * 20_000)
    _send(collector, b"OFF", topic="farmctl/site-a/rig/rig-07/hashing/set")
    _send(collector, b"MAYBE", topic="farmctl/site-a/rig/rig-07/hashing/set")
    # Sent to the wrong site's topic: refused before the id is claimed, nothing runs.
    _send(collector, {"id": "op-7", "action": "resume", "target": {"kind": "site", "id": "site-b"}})
    _send(
        collector, {"id": "op-8", "action": "curtail", "target": {"kind": "rack", "id": "rack-2"}}
    )
    _send(
        collector,
        {"id": "op-9", "action": "curtail", "target": {"kind": "rack", "id": "rack-dup"}},
    )
    _send(
        collector,
        {
            "id": "op-10",
            "action": "curtail",
            "target": {"kind": "rig", "id": "r", "site": "site-b"},
        },
    )
    _send(collector, b"OFF", topic="farmctl/site-b/rig/rig-07/hashing/set")

    acks = wait_for(
        lambda: (
            len(collector.json("farmctl/site-a/cmd/ack")) >= 11
            and collector.json("farmctl/site-a/cmd/ack")
        ),
        what="11 acks",
    )
    by_id = {a["id"]: a for a in acks}
    assert by_id["op-1"]["ok"] is True and by_id["op-1"]["detail"] == {"rigs": 12}
    assert by_id["op-2"] == {**by_id["op-2"], "ok": False, "error": "no rack 'rack-9'"}
    assert by_id["op-3"]["ok"] is True
    assert by_id["op-4"]["ok"] is False and "is not after start" in by_id["op-4"]["error"]
    assert by_id["op-5"]["ok"] is False and "invalid command" in by_id["op-5"]["error"]
    assert by_id["op-6"]["ok"] is False and "target.id" in by_id["op-6"]["error"]
    ha = [a for a in acks if a["id"].startswith("ha-")]
    assert len(ha) == 1 and ha[0]["ok"] is True
    assert len([a for a in acks if a["id"] == "op-1"]) == 1
    assert by_id["op-7"]["ok"] is False
    assert by_id["op-7"]["error"] == (
        "site 'site-b' sent on farmctl/site-a/cmd; send it on farmctl/site-b/cmd"
    )
    assert by_id["op-8"]["error"] == (
        "rack 'rack-2' is at site site-b, not 'site-a'; send it on farmctl/site-b/cmd"
    )
    assert by_id["op-9"]["error"] == (
        "rack 'rack-dup' exists at sites site-a, site-b; target its rigs instead"
    )
    assert by_id["op-10"]["error"] == (
        "target site 'site-b' sent on farmctl/site-a/cmd; send it on farmctl/site-b/cmd"
    )

    kinds = [(c.id, c.action, c.target.kind, c.target.id) for c in recorder.commands]
    assert kinds.count(("op-1", "curtail", "rack", "rack-1")) == 1
    assert ("op-2", "resume", "rack", "rack-9") in kinds
    override = next(c for c in recorder.commands if c.id == "op-3")
    assert (
        isinstance(override, OverrideCommand)
        and (override.end - override.start).seconds == 3 * 3600
    )
    switch = [c for c in recorder.commands if c.id.startswith("ha-")]
    assert len(switch) == 1 and switch[0].action == "curtail" and switch[0].target.site == "site-a"
    assert len(recorder.commands) == 4
    wait_for(
        lambda: bridge.rejected == 11,
        what="11 rejections: op-4..op-10, non-JSON, oversized, MAYBE, site-b switch",
    )
    with collector.lock:
        assert not [t for t, _ in collector.messages if t.startswith("farmctl/site-b/cmd/ack")]
    assert bridge.seen.duplicates == 1
    wait_for(lambda: bridge.outbox.pending() == 0, what="every ack confirmed by the broker")


async def test_async_handler_runs_on_the_daemon_loop(
    mosquitto: MosquittoBroker, engine: sa.Engine
) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    seen_loops: list[asyncio.AbstractEventLoop] = []

    async def handler(command: Command) -> CommandResult:
        seen_loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.01)
        return CommandResult(True, detail={"action": command.action})

    client = MqttClient(settings_for(mosquitto.port, "controller-async"))
    outbox = OutboxDispatcher(engine, client)
    bridge = MqttBridge(client, engine, outbox, handler, loop=loop)
    collector = Collector(mosquitto.port, "farmctl/s/cmd/ack", client_id="async-collector")
    client.start()
    outbox.start()
    try:
        await loop.run_in_executor(None, client.wait_ready)
        _send(
            collector,
            {"id": "a-1", "action": "resume", "target": {"kind": "site", "id": "s"}},
            topic="farmctl/s/cmd",
        )
        for _ in range(200):
            if collector.json("farmctl/s/cmd/ack"):
                break
            await asyncio.sleep(0.02)
        ack = collector.json("farmctl/s/cmd/ack")[0]
        assert ack["id"] == "a-1" and ack["ok"] is True and ack["detail"] == {"action": "resume"}
        assert seen_loops == [loop]
    finally:
        await loop.run_in_executor(None, bridge.close)
        outbox.stop()
        client.stop()
        collector.close()
