"""Power meters: Tasmota and Shelly Gen2 payloads, overlay of partial frames, power precedence."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from miners.meters import (
    MeterBook,
    MeterConfig,
    MeterPayloadError,
    RigPlacement,
    ShellyState,
    apply_power,
    parse_tasmota_sensor,
    resolve_power,
)
from miners.mqtt_sim import SimEndpoint, SimShellyMeter, SimTasmotaMeter
from miners.status import RigStatus
from tests.mqtt.conftest import settings_for
from tests.support.waiting import wait_for

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# The shape Tasmota 13/14 publishes on tele/<topic>/SENSOR for an energy-monitoring plug.
TASMOTA_SENSOR = (
    b'{"Time":"2026-11-23T13:00:07","ENERGY":{"TotalStartTime":"2026-01-04T10:21:15",'
    b'"Total":1543.217,"Yesterday":73.412,"Today":39.870,"Period":[3,0],"Power":3102,'
    b'"ApparentPower":3166,"ReactivePower":632,"Factor":0.98,"Voltage":231,"Current":13.706}}'
)
# A Shelly Pro 1PM's NotifyFullStatus on <id>/events/rpc (aenergy.total in Wh).
SHELLY_FULL = {
    "src": "shellypro1pm-30c6f7828bd4",
    "dst": "shellypro1pm-30c6f7828bd4/events",
    "method": "NotifyFullStatus",
    "params": {
        "ts": 1795435200.51,
        "switch:0": {
            "id": 0,
            "source": "init",
            "output": True,
            "apower": 3088.4,
            "voltage": 230.6,
            "freq": 50.0,
            "current": 13.42,
            "pf": 0.99,
            "aenergy": {
                "total": 1822114.931,
                "by_minute": [51472.3, 51470.1, 51468.9],
                "minute_ts": 1795435200,
            },
            "temperature": {"tC": 48.9, "tF": 120.1},
        },
        "sys": {"mac": "30C6F7828BD4", "restart_required": False, "uptime": 86400},
        "wifi": {"sta_ip": "10.0.4.21", "status": "got ip", "rssi": -61},
    },
}


def test_tasmota_sensor_normalized_to_watts_and_watt_hours() -> None:
    reading = parse_tasmota_sensor("tasmota_8C4F2A", TASMOTA_SENSOR, NOW)
    assert reading.power_w == 3102.0
    assert reading.energy_wh == pytest.approx(1_543_217.0)
    assert reading.energy_kwh == pytest.approx(1543.217)
    assert reading.voltage_v == 231.0
    assert reading.current_a == pytest.approx(13.706)
    assert reading.time == NOW  # device-local Time has no zone: stamped on receipt


def test_tasmota_multichannel_power_is_summed() -> None:
    payload = b'{"ENERGY":{"Total":[10.5,2.25],"Power":[1500,1490],"Voltage":[230,230],"Current":[6.5,6.4]}}'
    reading = parse_tasmota_sensor("tasmota_dual", payload, NOW)
    assert reading.power_w == 2990.0
    assert reading.energy_wh == pytest.approx(12_750.0)
    assert reading.voltage_v == 230.0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1,2]", "expected an object"),
        (b'{"Time":"x","ANALOG":{"A0":3}}', "without an ENERGY object"),
        (b'{"ENERGY":{"Power":"lots"}}', "ENERGY.Power='lots' is not a number"),
        (b'{"ENERGY":{"Voltage":230}}', "neither Power nor Total"),
        (b"{" + b" " * 40_000 + b"}", "exceeds"),
    ],
)
def test_tasmota_bad_payloads_name_the_meter_and_problem(payload: bytes, message: str) -> None:
    with pytest.raises(MeterPayloadError, match=message) as info:
        parse_tasmota_sensor("tasmota_8C4F2A", payload, NOW)
    assert "tasmota_8C4F2A" in str(info.value)


def test_shelly_partial_frames_overlay_the_last_full_state() -> None:
    state = ShellyState("shellypro1pm-30c6f7828bd4")
    full = state.apply(json.dumps(SHELLY_FULL).encode(), NOW)
    assert full is not None
    assert full.power_w == 3088.4
    assert full.energy_wh == pytest.approx(1_822_114.931)
    assert full.voltage_v == 230.6
    assert full.time == datetime.fromtimestamp(1795435200.51, UTC)
    # a partial frame with only the new power: energy and voltage are kept, not reset
    partial = {
        "src": "shellypro1pm-30c6f7828bd4",
        "method": "NotifyStatus",
        "params": {"ts": 1795435230.02, "switch:0": {"id": 0, "apower": 15.2, "current": 0.07}},
    }
    after = state.apply(json.dumps(partial).encode(), NOW)
    assert after is not None
    assert after.power_w == 15.2
    assert after.current_a == 0.07
    assert after.energy_wh == pytest.approx(1_822_114.931)
    assert after.voltage_v == 230.6
    # the minute's energy update nests inside aenergy: merged, by_minute kept
    energy = {
        "method": "NotifyStatus",
        "params": {
            "ts": 1795435260.0,
            "switch:0": {"aenergy": {"total": 1822166.4, "minute_ts": 1795435260}},
        },
    }
    later = state.apply(json.dumps(energy).encode(), NOW)
    assert later is not None
    assert later.energy_wh == pytest.approx(1_822_166.4)
    assert later.energy_kwh == pytest.approx(1822.1664)
    assert later.power_w == 15.2
    assert state.status["switch:0"]["aenergy"]["by_minute"] == [51472.3, 51470.1, 51468.9]
    assert state.status["wifi"]["rssi"] == -61


def test_shelly_pro_3em_total_active_power_and_energy() -> None:
    frame = {
        "method": "NotifyFullStatus",
        "params": {
            "ts": 1795435200.0,
            "em:0": {"id": 0, "a_voltage": 231.2, "total_act_power": 9270.5, "total_current": 40.3},
            "emdata:0": {"id": 0, "total_act": 5_120_330.25},
        },
    }
    reading = ShellyState("shellypro3em-a8032ab1c2d3").apply(json.dumps(frame).encode(), NOW)
    assert reading is not None
    assert reading.power_w == 9270.5
    assert reading.energy_wh == pytest.approx(5_120_330.25)
    assert reading.voltage_v == 231.2


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"method": "Switch.Set", "params": {}}, "method 'Switch.Set'"),
        ({"method": "NotifyStatus", "params": [1]}, "without a params object"),
        ({"method": "NotifyStatus", "params": {"switch:0": {"apower": True}}}, "is a boolean"),
    ],
)
def test_shelly_bad_frames_are_refused(frame: dict[str, object], message: str) -> None:
    with pytest.raises(MeterPayloadError, match=message):
        ShellyState("shelly-x").apply(json.dumps(frame).encode(), NOW)


class FakeClock:
    """Monotonic time the test moves by hand (meter silence is measured on it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _catalog(data_dir: Path) -> dict[str, tuple[float, float]]:
    with (data_dir / "asic_models.csv").open() as fh:
        return {
            row["model"]: (float(row["hashrate_ths"]), float(row["power_w"]))
            for row in csv.DictReader(fh)
        }


def test_power_precedence_meter_then_reported_then_nameplate(data_dir: Path) -> None:
    catalog = _catalog(data_dir)
    _s19j_ths, s19j_w = catalog["Antminer S19j Pro"]
    s21_ths, s21_w = catalog["Antminer S21"]
    assert (s19j_w, s21_w) == (3050.0, 3500.0)
    clock = FakeClock()
    book = MeterBook(
        [
            MeterConfig("tasmota_rig_a", "tasmota", "rig", "rig-a"),
            MeterConfig("shellypro1pm-rack2", "shelly", "rack", "rack-2"),
        ],
        clock=clock,
    )
    statuses = {
        "rig-a": RigStatus(
            state="hashing", hashrate_ths=99.1, power_w=3000.0, power_source="reported"
        ),
        "rig-b": RigStatus(
            state="hashing", hashrate_ths=98.7, power_w=3010.0, power_source="reported"
        ),
        "rig-c": RigStatus(state="hashing", hashrate_ths=s21_ths),  # reports no power
        "rig-d": RigStatus(
            state="hashing", hashrate_ths=99.5, power_w=2990.0, power_source="reported"
        ),
        "rig-e": RigStatus(state="hashing", hashrate_ths=s21_ths),
    }
    placements = {
        "rig-a": RigPlacement(rack="rack-1", nameplate_w=s19j_w),
        "rig-b": RigPlacement(rack="rack-1", nameplate_w=s19j_w),
        "rig-c": RigPlacement(rack="rack-1", nameplate_w=s21_w),
        "rig-d": RigPlacement(rack="rack-2", nameplate_w=s19j_w),
        "rig-e": RigPlacement(rack="rack-2", nameplate_w=s21_w),
    }
    book.handle("tele/tasmota_rig_a/SENSOR", TASMOTA_SENSOR, NOW)
    rack_frame = {
        "method": "NotifyFullStatus",
        "params": {"ts": 1.0, "switch:0": {"apower": 6650.0}},
    }
    book.handle("shellypro1pm-rack2/events/rpc", json.dumps(rack_frame).encode(), NOW)

    res = resolve_power(statuses, placements, book, silence_s=60)
    assert (res["rig-a"].power_w, res["rig-a"].source, res["rig-a"].meter_id) == (
        3102.0,
        "meter",
        "tasmota_rig_a",
    )
    assert (res["rig-b"].power_w, res["rig-b"].source) == (3010.0, "reported")
    assert (res["rig-c"].power_w, res["rig-c"].source) == (3500.0, "nameplate")
    # the rack meter's 6650 W shared by reported (2990) and nameplate (3500) weights
    assert res["rig-d"].source == res["rig-e"].source == "meter"
    assert res["rig-d"].power_w == pytest.approx(6650.0 * 2990 / (2990 + 3500), abs=0.1)
    assert res["rig-d"].power_w + res["rig-e"].power_w == pytest.approx(6650.0, abs=0.2)

    applied = apply_power(statuses["rig-a"], res["rig-a"])
    assert applied.power_source == "meter"
    assert applied.efficiency_jth == pytest.approx(3102.0 / 99.1, abs=0.001)

    # the Tasmota goes silent: rig-a falls back to its own figure, flagged
    clock.now += 61
    book.handle("shellypro1pm-rack2/events/rpc", json.dumps(rack_frame).encode(), NOW)
    res = resolve_power(statuses, placements, book, silence_s=60)
    assert (res["rig-a"].power_w, res["rig-a"].source, res["rig-a"].meter_silent) == (
        3000.0,
        "reported",
        True,
    )
    assert "tasmota_rig_a silent for 61s" in res["rig-a"].notes[0]
    assert res["rig-d"].source == "meter" and not res["rig-d"].meter_silent
    flagged = apply_power(statuses["rig-a"], res["rig-a"])
    assert flagged.power_source == "reported"
    assert any("silent" in e for e in flagged.errors)

    # an LWT "Offline" distrusts the rack meter at once
    book.handle("shellypro1pm-rack2/online", b"false", NOW)
    res = resolve_power(statuses, placements, book, silence_s=60)
    assert (res["rig-e"].power_w, res["rig-e"].source, res["rig-e"].meter_silent) == (
        3500.0,
        "nameplate",
        True,
    )


def test_meter_book_drops_unknown_topics_and_bad_payloads() -> None:
    book = MeterBook([MeterConfig("tasmota_x", "tasmota", "rig", "r")])
    assert book.handle("tele/other/SENSOR", TASMOTA_SENSOR) is None
    assert book.handle("tele/tasmota_x/SENSOR", b"\xff\xfe garbage") is None
    assert book.handle("tele/tasmota_x/LWT", b"Maybe") is None
    assert book.dropped == 3
    assert book.fresh_reading("tasmota_x", 60) is None


def test_simulated_meters_over_a_real_broker(mosquitto) -> None:  # type: ignore[no-untyped-def]
    from controller.mqtt.client import MqttClient

    book = MeterBook(
        [
            MeterConfig("tasmota-sim", "tasmota", "rig", "rig-1"),
            MeterConfig("shellypro1pm-sim", "shelly", "rack", "rack-1"),
        ]
    )
    client = MqttClient(settings_for(mosquitto.port, "meter-reader"))
    book.subscribe(client)
    client.start()
    client.wait_ready()
    endpoint = SimEndpoint(port=mosquitto.port)
    tasmota = SimTasmotaMeter(
        endpoint, "tasmota-sim", [lambda: 3050.0], interval_s=0.1, overhead=0.0
    )
    shelly = SimShellyMeter(
        endpoint, "shellypro1pm-sim", [lambda: 3050.0, lambda: 15.0], interval_s=0.1, overhead=0.0
    )
    tasmota.start()
    shelly.start()
    try:
        t = wait_for(lambda: book.fresh_reading("tasmota-sim", 5), what="tasmota reading")
        assert t.power_w == 3050.0
        wait_for(
            lambda: shelly._sent_full and book.silent_for("shellypro1pm-sim") is not None,
            what="shelly",
        )
        # several partial frames later the reading still carries the full frame's voltage
        wait_for(
            lambda: (r := book.fresh_reading("shellypro1pm-sim", 5)) and r.voltage_v == 230.1,
            what="overlay",
        )
        reading = book.fresh_reading("shellypro1pm-sim", 5)
        assert reading is not None and reading.power_w == 3065.0
        assert reading.energy_wh is not None
        tasmota.stop()
        # the sim dropped its socket: the broker publishes its last will, Offline
        wait_for(lambda: book.fresh_reading("tasmota-sim", 60) is None, what="tasmota LWT offline")
        assert book.fresh_reading("shellypro1pm-sim", 60) is not None
    finally:
        tasmota.stop()
        shelly.stop()
        client.stop()


def test_pdu_meter_shared_and_rig_meter_wins_inside_it() -> None:
    book = MeterBook(
        [
            MeterConfig("shellypro3em-pdu7", "shelly", "pdu", "pdu-7"),
            MeterConfig("tasmota_r2", "tasmota", "rig", "r2"),
        ]
    )
    frame = {
        "method": "NotifyFullStatus",
        "params": {"ts": 1.0, "em:0": {"total_act_power": 9000.0}},
    }
    book.handle("shellypro3em-pdu7/events/rpc", json.dumps(frame).encode(), NOW)
    book.handle("tele/tasmota_r2/SENSOR", b'{"ENERGY":{"Power":2950,"Total":1.0}}', NOW)
    statuses = {
        "r1": RigStatus(state="hashing", power_w=3000.0, power_source="reported"),
        "r2": RigStatus(state="hashing", power_w=3000.0, power_source="reported"),
        "r3": RigStatus(state="curtailed", power_w=15.0, power_source="reported"),
        "r4": RigStatus(state="offline"),
    }
    placements = {k: RigPlacement(pdu="pdu-7", nameplate_w=3050.0) for k in statuses}
    res = resolve_power(statuses, placements, book)
    assert (res["r2"].power_w, res["r2"].meter_id) == (2950.0, "tasmota_r2")
    # the PDU's 9000 W split by reported power 3000 : 3000 : 15 : 0 (r2's own meter wins for r2)
    assert res["r1"].power_w == pytest.approx(9000.0 * 3000 / 6015, abs=0.1)
    assert res["r3"].power_w == pytest.approx(9000.0 * 15 / 6015, abs=0.1)
    assert res["r4"].power_w == 0.0 and res["r4"].source == "meter"
