"""The gateway on a real mosquitto: MQTT rigs polled beside RPC rigs, meter power wins, rig
states published, an operator command becomes an override and is acknowledged."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from controller.config import parse_config
from controller.gateway import Gateway
from controller.mqtt_service import MqttService
from miners.mqtt_sim import SimEndpoint, demo_farm
from miners.sim.simulator import Simulator
from tests.support.mosquitto import MosquittoBroker


class _Listener:
    """A plain MQTT subscriber, like an operator's dashboard."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: dict[str, Any] = {}
        self.event = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="listener", protocol=paho.MQTTv5
        )

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            self.messages[msg.topic] = msg.payload
            self.event.set()

        def on_connect(client: paho.Client, *_: Any) -> None:
            for topic in topics:
                client.subscribe(topic, qos=1)

        self.client.on_message = on_message
        self.client.on_connect = on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def wait_for(self, topic: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if topic in self.messages:
                return json.loads(self.messages[topic])
            time.sleep(0.05)
        raise AssertionError(f"nothing on {topic}; got {sorted(self.messages)}")

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_mqtt_rigs_meters_bridge_and_commands(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    farm = demo_farm(
        SimEndpoint(port=mosquitto.port), site="west", rigs=2, interval_s=0.5, rack="rack-m"
    )
    farm.start()
    listener = _Listener(mosquitto.port, ["farmctl/#"])
    async with Simulator({"antminer": 1}, ramp_up_s=0.2, ramp_down_s=0.1) as sim:
        rpc = sim.rigs[0]
        raw = {
            "farm": {"name": "mqttfarm", "data_dir": str(tmp_path)},
            "sites": [{"id": "west", "racks": [{"id": "rack-m"}, {"id": "rack-a"}]}],
            "rigs": [
                {
                    "name": "s19-rpc",
                    "site": "west",
                    "rack": "rack-a",
                    "address": f"127.0.0.1:{rpc.port}",
                    "family": "antminer",
                    "http_port": rpc.http_port,
                    "model": "Antminer S19 Pro",
                },
                {
                    "name": "mqtt-rig-1",
                    "site": "west",
                    "rack": "rack-m",
                    "address": "mqtt-rig-1",
                    "family": "mqtt",
                    "model": "Antminer S19j Pro",
                },
                {
                    "name": "mqtt-rig-2",
                    "site": "west",
                    "rack": "rack-m",
                    "address": "mqtt-rig-2",
                    "family": "mqtt",
                    "model": "Antminer S19j Pro",
                },
            ],
            "meters": [
                {"id": m.meter_id, "kind": m.kind, "scope": m.scope, "target": m.target}
                for m in farm.meter_configs
            ],
            "mqtt": {
                "port": mosquitto.port,
                "client_id": "gw-test",
                "topic_prefix": "farm",
                "ha_discovery": True,
            },
            "metrics": {"enabled": False},
        }
        config = parse_config(raw, tmp_path / "farm.toml")
        gateway = Gateway(config, base_dir=tmp_path)
        service = MqttService(gateway)
        gateway.use_driver_builder(service.wrap_driver_builder(gateway.driver_builder))
        await gateway.start()
        service.start()
        try:
            # MQTT rigs report within a second or two; poll until both are seen hashing.
            async def both_hashing() -> bool:
                statuses = await gateway.poll()
                return sum(1 for s in statuses if s.state == "hashing") == 3

            deadline = time.monotonic() + 20
            while not await both_hashing():
                assert time.monotonic() < deadline, gateway.state.statuses
                await asyncio.sleep(0.5)
            # Meters: the Tasmota plug measures mqtt-rig-1, the Shelly measures rack-m.
            await asyncio.sleep(1.5)
            await gateway.poll()
            statuses = gateway.state.statuses
            assert statuses["mqtt-rig-1"].power_source == "meter"
            assert statuses["mqtt-rig-2"].power_source == "meter"
            assert statuses["s19-rpc"].power_source in ("reported", "nameplate")
            # The bridge published every rig's normalized state and the totals.
            state = listener.wait_for("farmctl/west/rig/mqtt-rig-2/state")
            assert state["state"] == "hashing" and state["rig"] == "mqtt-rig-2"
            totals = listener.wait_for("farmctl/totals")
            assert totals["states"]["hashing"] == 3
            # An operator curtails rack-m over MQTT: override, reconcile now, ack.
            listener.client.publish(
                "farmctl/west/cmd",
                json.dumps(
                    {
                        "id": "op-1",
                        "action": "curtail",
                        "target": {"kind": "rack", "id": "rack-m"},
                        "reason": "test",
                    }
                ),
                qos=1,
            )
            ack = await asyncio.to_thread(listener.wait_for, "farmctl/west/cmd/ack", 30.0)
            assert ack["id"] == "op-1" and ack["ok"] is True, ack
            assert sorted(ack["detail"]["curtailed"]) == ["mqtt-rig-1", "mqtt-rig-2"]
            assert [r.state for r in farm.rigs] == ["curtailed", "curtailed"]
            # A command for a rack that does not exist is refused with a reason.
            listener.messages.pop("farmctl/west/cmd/ack", None)
            listener.client.publish(
                "farmctl/west/cmd",
                json.dumps(
                    {"id": "op-2", "action": "resume", "target": {"kind": "rack", "id": "rack-zz"}}
                ),
                qos=1,
            )
            bad = await asyncio.to_thread(listener.wait_for, "farmctl/west/cmd/ack", 30.0)
            assert (
                bad["id"] == "op-2"
                and bad["ok"] is False
                and "unknown rack 'rack-zz'" in bad["error"]
            )
        finally:
            service.stop()
            await gateway.close()
            listener.stop()
            farm.stop()


async def test_two_gateways_one_broker_each_runs_only_its_sites_commands(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """Two `farmctl run --site` gateways from one config, one broker, one database: distinct
    client ids and topics; a command for site b runs on b's gateway only, and a command sent
    to a's topic for b's rig is refused by a and run by nobody."""
    listener = _Listener(mosquitto.port, ["farmctl/#"])
    async with Simulator({"antminer": 2}, ramp_up_s=0.2, ramp_down_s=0.1) as sim:
        raw = {
            "farm": {"name": "twofarm", "data_dir": str(tmp_path)},
            "sites": [{"id": "a", "racks": [{"id": "rack-1"}]}, {"id": "b"}],
            "rigs": [
                {
                    "name": f"rig-{site}",
                    "site": site,
                    "address": f"127.0.0.1:{rig.port}",
                    "family": "antminer",
                    "http_port": rig.http_port,
                }
                for site, rig in zip("ab", sim.rigs, strict=True)
            ],
            "mqtt": {"port": mosquitto.port},  # no client_id: each gateway derives its own
            "metrics": {"enabled": False},
        }
        config = parse_config(raw, tmp_path / "farm.toml")
        gateways = {site: Gateway(config, base_dir=tmp_path, sites=[site]) for site in "ab"}
        services = {site: MqttService(g) for site, g in gateways.items()}
        handled: dict[str, list[str]] = {"a": [], "b": []}
        for site, service in services.items():
            # observe which gateway runs which command; the real handler still does the work
            def counting(command: Any, site: str = site, run: Any = service.bridge.handler) -> Any:
                handled[site].append(command.id)
                return run(command)

            service.bridge.handler = counting
        try:
            for gateway in gateways.values():
                await gateway.start()
            for service in services.values():
                service.start()
            ids = {s: v.client.settings.client_id for s, v in services.items()}
            assert ids == {"a": "farmctl-twofarm_a", "b": "farmctl-twofarm_b"}
            for service in services.values():
                await asyncio.to_thread(service.client.wait_ready)
            for gateway in gateways.values():
                await gateway.poll()
            for site in "ab":
                assert listener.wait_for(f"farmctl/{site}/totals")["rigs"] == 1
                online = f"farmctl/gateway/twofarm_{site}/availability"
                await asyncio.to_thread(_until_topic, listener, online)
                assert listener.messages[online] == b"online"
            assert "farmctl/totals" not in listener.messages  # neither gateway owns the farm

            curtail_b = {"action": "curtail", "target": {"kind": "rig", "id": "rig-b"}}
            listener.client.publish("farmctl/a/cmd", json.dumps({"id": "op-1", **curtail_b}), qos=1)
            refused = await asyncio.to_thread(listener.wait_for, "farmctl/a/cmd/ack", 30.0)
            assert refused == {
                **refused,
                "id": "op-1",
                "ok": False,
                "error": "rig 'rig-b' is at site b, not 'a'; send it on farmctl/b/cmd",
            }
            listener.client.publish("farmctl/b/cmd", json.dumps({"id": "op-2", **curtail_b}), qos=1)
            ack = await asyncio.to_thread(listener.wait_for, "farmctl/b/cmd/ack", 30.0)
            assert ack["id"] == "op-2" and ack["ok"] is True, ack
            assert ack["detail"]["curtailed"] == ["rig-b"]
            assert [r.mode for r in sim.rigs] == ["hashing", "curtailed"]
            assert handled == {"a": [], "b": ["op-2"]}
            assert services["a"].bridge.rejected == 1 and services["b"].bridge.rejected == 0
        finally:
            for service in services.values():
                service.stop()
            for gateway in gateways.values():
                await gateway.close()
            listener.stop()


def _until_topic(listener: _Listener, topic: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while topic not in listener.messages:
        assert time.monotonic() < deadline, f"nothing on {topic}; got {sorted(listener.messages)}"
        time.sleep(0.05)


def test_meter_targets_are_checked(tmp_path: Path) -> None:
    from controller.config import ConfigError

    raw = {
        "sites": [{"id": "a"}],
        "meters": [{"id": "m1", "kind": "tasmota", "scope": "rig", "target": "ghost"}],
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw, tmp_path / "x.toml")
    assert [str(p) for p in err.value.problems] == ["meters[0].target: 'ghost': no such rig"]


def test_client_ids_from_one_config_are_distinct_and_stable() -> None:
    from controller.config import MqttConfig
    from controller.mqtt.client import client_id_for, settings_from_config

    assert client_id_for(None, "farm_west") == "farmctl-farm_west"
    assert client_id_for("gw-{gateway}", "farm_east") == "gw-farm_east"
    # a fixed id is kept for a gateway of the whole config, suffixed for one of several
    assert client_id_for("farmctl-gw", "farm_east") == "farmctl-gw"
    assert client_id_for("farmctl-gw", "farm_east", ["east"]) == "farmctl-gw-east"
    assert client_id_for("farmctl-gw", "farm_b_a", ["b", "a"]) == "farmctl-gw-a_b"
    settings = settings_from_config(
        MqttConfig(), client_id_suffix="-ingest", gateway="farm_west", only_sites=["west"]
    )
    assert settings.client_id == "farmctl-farm_west-ingest"


def test_each_site_gets_its_part_of_the_plan() -> None:
    from datetime import UTC, datetime

    from controller.mqtt_service import plan_summary
    from forecasting.plan_types import HashingPlan, PlanConstraints, PlanHour, RigGroup

    at = datetime(2026, 12, 5, 18, tzinfo=UTC)
    plan = HashingPlan(
        created_at=at,
        hashprice_usd_per_th_day=0.05,
        constraints=PlanConstraints(),
        hours=tuple(
            PlanHour(at, g, g == "g1", 0.1, 40.0, 50.0, 60.0, 55.0, "economics")
            for g in ("g1", "g2")
        ),
        groups=(RigGroup("g1", 21.5, 0.1, ("a-1", "b-1")), RigGroup("g2", 30.0, 0.1, ("b-2",))),
    )
    site_a = plan_summary(plan, site="a", rigs={"a-1"})
    assert site_a["site"] == "a"
    assert site_a["groups"] == [{"name": "g1", "j_per_th": 21.5, "rigs": ["a-1"]}]
    assert [(h["group"], h["hashing"]) for h in site_a["hours"]] == [("g1", True)]
    whole = plan_summary(plan)
    assert "site" not in whole and [g["rigs"] for g in whole["groups"]] == [["a-1", "b-1"], ["b-2"]]
