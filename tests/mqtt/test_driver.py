"""The MQTT rig driver against a real mosquitto and simulated rig agents."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from controller.mqtt.client import MqttClient
from miners.driver import RigActionNotVerified, RigDriver, RigError, RigUnsupportedAction
from miners.mqtt_driver import (
    MqttPayloadError,
    MqttRigHub,
    RigTopics,
    parse_telemetry,
    telemetry_to_status,
)
from miners.mqtt_sim import SimEndpoint, SimMqttRig
from tests.mqtt.conftest import settings_for
from tests.support.mosquitto import MosquittoBroker
from tests.support.waiting import wait_for


@pytest.fixture
def hub(mosquitto: MosquittoBroker) -> Iterator[MqttRigHub]:
    client = MqttClient(settings_for(mosquitto.port, "controller-rigs"))
    hub = MqttRigHub(client, stale_after_s=30)
    client.start()
    client.wait_ready()
    yield hub
    client.stop()


@pytest.fixture
def rig(mosquitto: MosquittoBroker) -> Iterator[SimMqttRig]:
    sim = SimMqttRig(
        SimEndpoint(port=mosquitto.port),
        "site-a",
        "rig-07",
        mac="02:AA:00:00:00:07",
        interval_s=0.2,
    )
    sim.start()
    yield sim
    sim.stop()


def test_topic_layout_round_trips() -> None:
    topics = RigTopics("farm")
    assert topics.topic("site-a", "rig-07", "telemetry") == "farm/site-a/rig-07/telemetry"
    assert topics.parse("farm/site-a/rig-07/ack") == ("site-a", "rig-07", "ack")
    assert topics.parse("farm/site-a/rig-07/firmware") is None
    assert topics.parse("other/site-a/rig-07/telemetry") is None
    assert RigTopics("acme/farm").parse("acme/farm/s/r/cmd") == ("s", "r", "cmd")
    with pytest.raises(ValueError, match="not a valid topic segment"):
        topics.topic("site/a", "rig", "cmd")


def test_telemetry_payload_maps_onto_rig_status() -> None:
    payload = {
        "id": "rig-07-1",
        "ts": "2026-11-23T13:00:00+00:00",
        "state": "hashing",
        "mac": "02:AA:00:00:00:07",
        "model": "Antminer S19j Pro",
        "hashrate_ths": 100.2,
        "expected_hashrate_ths": 100.0,
        "power_w": 3050.0,
        "boards": [{"index": 0, "hashrate_ths": 33.4, "temp_c": 61.0, "chip_temp_c": 74.0}],
        "fans_rpm": [5400, 5460],
        "pools": [{"url": "stratum+tcp://pool.example:3333", "accepted": 120}],
        "uptime_s": 3600,
        "vendor_extra": {"ignored": True},
    }
    t = parse_telemetry("farm/a/r/telemetry", json.dumps(payload).encode())
    status = telemetry_to_status("a", "rig-07", t)
    assert status.mac == "02:aa:00:00:00:07"
    assert status.family == "mqtt"
    assert status.state == "hashing"
    assert status.power_source == "reported"
    assert status.efficiency_jth == pytest.approx(3050.0 / 100.2, abs=0.001)
    assert status.boards[0].chip_temp_c == 74.0
    assert status.pools[0].accepted == 120
    assert (
        status.last_seen is not None and status.last_seen.isoformat() == "2026-11-23T13:00:00+00:00"
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{", "invalid telemetry"),
        (b'{"id":"x","ts":"2026-11-23T13:00:00","state":"hashing"}', "at ts"),  # no timezone
        (b'{"id":"x","ts":"2026-11-23T13:00:00Z","state":"melting"}', "at state"),
        (
            b'{"id":"x","ts":"2026-11-23T13:00:00Z","state":"hashing","hashrate_ths":-5}',
            "at hashrate_ths",
        ),
        (
            b'{"id":"x","ts":"2026-11-23T13:00:00Z","state":"hashing","pad":"'
            + b"x" * 70_000
            + b'"}',
            "exceeds",
        ),
    ],
)
def test_bad_telemetry_is_refused_with_the_reason(payload: bytes, message: str) -> None:
    with pytest.raises(MqttPayloadError, match=message) as info:
        parse_telemetry("farm/a/r/telemetry", payload)
    assert "farm/a/r/telemetry" in str(info.value)


async def test_driver_status_curtail_resume_power_target(hub: MqttRigHub, rig: SimMqttRig) -> None:
    driver = hub.driver("site-a", "rig-07", ack_timeout_s=3, verify_timeout_s=3)
    assert isinstance(driver, RigDriver)
    wait_for(lambda: hub.telemetry("site-a", "rig-07"), what="first telemetry")
    status = await driver.status()
    assert status.state == "hashing"
    assert status.mac == "02:aa:00:00:00:07"
    assert status.power_source == "reported"
    assert 0.98 * 3050 <= (status.power_w or 0) <= 1.02 * 3050

    await driver.curtail()
    assert rig.state == "curtailed"
    assert (await driver.status()).state == "curtailed"
    assert rig.commands[-1]["action"] == "curtail" and "expires_at" in rig.commands[-1]

    await driver.resume()
    assert (await driver.status()).state == "hashing"

    await driver.set_power_target(2600)
    assert rig.power_target_w == 2600
    assert hub.telemetry("site-a", "rig-07").power_target_w == 2600  # type: ignore[union-attr]

    with pytest.raises(
        RigError, match=r"site-a/rig-07: set_power_target refused: power target 9000"
    ):
        await driver.set_power_target(9000)
    await driver.reboot()


async def test_unacknowledged_command_fails_clearly(
    hub: MqttRigHub, mosquitto: MosquittoBroker
) -> None:
    deaf = SimMqttRig(
        SimEndpoint(port=mosquitto.port),
        "site-a",
        "rig-deaf",
        mac="02:aa:00:00:00:99",
        interval_s=0.2,
        ignore_commands=True,
    )
    deaf.start()
    try:
        wait_for(lambda: hub.telemetry("site-a", "rig-deaf"), what="telemetry")
        driver = hub.driver("site-a", "rig-deaf", ack_timeout_s=0.5)
        with pytest.raises(
            RigError, match=r"rig-deaf: curtail: no ack on farm/site-a/rig-deaf/ack within 0.5s"
        ):
            await driver.curtail()
        assert deaf.commands and deaf.commands[0]["action"] == "curtail"
    finally:
        deaf.stop()


async def test_ack_without_matching_telemetry_is_not_verified(
    hub: MqttRigHub, rig: SimMqttRig
) -> None:
    wait_for(lambda: hub.telemetry("site-a", "rig-07"), what="telemetry")
    # the agent acks but its telemetry keeps saying "hashing" (stuck firmware)
    rig._apply = lambda cmd: (True, None, False)  # type: ignore[method-assign]
    driver = hub.driver("site-a", "rig-07", ack_timeout_s=2, verify_timeout_s=0.6)
    with pytest.raises(
        RigActionNotVerified, match="curtail acknowledged but telemetry within 1s shows hashing"
    ):
        await driver.curtail()


async def test_unsupported_action_and_capabilities(hub: MqttRigHub, rig: SimMqttRig) -> None:
    wait_for(lambda: hub.telemetry("site-a", "rig-07"), what="telemetry")
    with pytest.raises(RigUnsupportedAction, match="unknown action 'self_destruct'"):
        await hub.command("site-a", "rig-07", "self_destruct", 2.0)


async def test_last_will_marks_rig_offline_and_keeps_identity(
    hub: MqttRigHub, rig: SimMqttRig
) -> None:
    wait_for(lambda: hub.telemetry("site-a", "rig-07"), what="telemetry")
    driver = hub.driver("site-a", "rig-07")
    rig.stop(graceful=False)  # power cut: the broker publishes the will "offline"
    status = wait_for(
        lambda: (s := hub.status("site-a", "rig-07")).state == "offline" and s, what="offline"
    )
    assert status.state_reason == "rig went offline (last will / availability topic)"
    assert status.mac == "02:aa:00:00:00:07"
    assert status.hashrate_ths is None and status.power_w is None
    assert (await driver.status()).state == "offline"


def test_silent_rig_goes_offline_and_bad_messages_are_dropped(mosquitto: MosquittoBroker) -> None:
    now = [0.0]
    client = MqttClient(settings_for(mosquitto.port, "controller-silence"))
    hub = MqttRigHub(client, stale_after_s=30, clock=lambda: now[0])
    client.start()
    client.wait_ready()
    sim = SimMqttRig(
        SimEndpoint(port=mosquitto.port), "s", "r1", mac="02:00:00:00:00:01", interval_s=60
    )
    sim.start()
    try:
        wait_for(sim.client.is_connected, what="sim connected")
        sim.publish_telemetry().wait_for_publish(5)
        wait_for(lambda: hub.telemetry("s", "r1"), what="telemetry")
        assert hub.status("s", "r1").state == "hashing"
        now[0] += 31
        status = hub.status("s", "r1")
        assert (
            status.state == "offline" and status.state_reason == "no telemetry for 31s (limit 30s)"
        )
        # malformed telemetry, a bad availability word and a bad ack: logged, dropped, no crash
        for topic, payload in [
            ("farm/s/r1/telemetry", b"\x00\x01 not json"),
            ("farm/s/r1/availability", b"sleepy"),
            ("farm/s/r1/ack", b"[]"),
        ]:
            sim.client.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_for(lambda: hub.dropped == 3, what="three drops")
        assert client.connected
    finally:
        sim.stop()
        client.stop()


def test_settings_from_the_config_section(monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.config import MqttConfig, SecretRefError
    from controller.mqtt.client import settings_from_config

    monkeypatch.setenv("FARMCTL_TEST_MQTT_PASSWORD", "s3cret-value")
    config = MqttConfig(
        host="10.0.0.2",
        port=8883,
        client_id="gw-site-a",
        username="farmctl-controller",
        password={"env": "FARMCTL_TEST_MQTT_PASSWORD"},
        tls=True,
        ca_file="/etc/ca.crt",
        session_expiry_s=3600,
    )
    settings = settings_from_config(config, client_id_suffix="-ingest")
    assert (settings.host, settings.port, settings.client_id) == (
        "10.0.0.2",
        8883,
        "gw-site-a-ingest",
    )
    assert (
        settings.password == "s3cret-value" and settings.tls and settings.ca_file == "/etc/ca.crt"
    )
    assert settings.session_expiry_s == 3600
    assert "s3cret-value" not in repr(settings)
    monkeypatch.delenv("FARMCTL_TEST_MQTT_PASSWORD")
    with pytest.raises(SecretRefError, match="FARMCTL_TEST_MQTT_PASSWORD is not set"):
        settings_from_config(config)


def test_demo_farm_rigs_and_meters_end_to_end(mosquitto: MosquittoBroker) -> None:
    from miners.meters import MeterBook, RigPlacement, apply_power, resolve_power
    from miners.mqtt_sim import demo_farm

    farm = demo_farm(SimEndpoint(port=mosquitto.port), site="demo", rigs=3, interval_s=0.1)
    client = MqttClient(settings_for(mosquitto.port, "controller-demo"))
    hub = MqttRigHub(client)
    book = MeterBook(farm.meter_configs)
    book.subscribe(client)
    client.start()
    client.wait_ready()
    farm.start()
    try:
        names = ["mqtt-rig-1", "mqtt-rig-2", "mqtt-rig-3"]
        wait_for(lambda: all(hub.telemetry("demo", n) for n in names), what="three rigs")
        wait_for(
            lambda: (
                book.fresh_reading("tasmota-rig1", 5)
                and book.fresh_reading("shellypro1pm-rack1", 5)
            ),
            what="both meters",
        )
        statuses = {n: hub.status("demo", n) for n in names}
        placements = {n: RigPlacement(rack="mqtt-rack", nameplate_w=3050.0) for n in names}
        resolved = resolve_power(statuses, placements, book, silence_s=5)
        assert {r.source for r in resolved.values()} == {"meter"}
        assert resolved["mqtt-rig-1"].meter_id == "tasmota-rig1"
        # Tasmota: the rig's ~3050 W plus 2 % overhead, as whole watts
        assert 0.99 * 3050 * 1.02 <= (resolved["mqtt-rig-1"].power_w or 0) <= 1.01 * 3050 * 1.02 + 1
        assert resolved["mqtt-rig-2"].meter_id == "shellypro1pm-rack1"
        status = apply_power(statuses["mqtt-rig-2"], resolved["mqtt-rig-2"])
        assert status.power_source == "meter" and status.efficiency_jth is not None
    finally:
        farm.stop()
        client.stop()
