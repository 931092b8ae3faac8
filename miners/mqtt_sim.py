"""Simulated MQTT rig agents and power meters, for the demo and the tests.

A `SimMqttRig` is what a small agent on a rig (or the rig's own firmware) would do: keep an
MQTT session with a last will on its availability topic, publish telemetry every few seconds
in the documented schema, and obey curtail/resume/power-target/reboot commands, acknowledging
each by its request id. `SimTasmotaMeter` and `SimShellyMeter` publish what the real devices
publish, measuring the power of the rigs they are given.
"""

from __future__ import annotations

import abc
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from miners.meters import MeterConfig
from miners.mqtt_driver import DEFAULT_PREFIX, RigTopics

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SimEndpoint:
    """Broker address and the credentials a simulated device logs in with."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None


def _client(
    endpoint: SimEndpoint, client_id: str, will: tuple[str, str], username: str | None = None
) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    user = username or endpoint.username
    if user is not None:
        client.username_pw_set(user, endpoint.password)
    if endpoint.ca_file:
        client.tls_set(ca_certs=endpoint.ca_file)
    client.will_set(will[0], will[1], qos=1, retain=True)
    client.reconnect_delay_set(1, 5)
    return client


def _drop_connection(client: paho.Client) -> None:
    """Like a power cut: stop the network loop first (no reconnect), then close the socket."""
    client.loop_stop()
    sock = client.socket()
    if sock is not None:
        sock.close()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class SimMqttRig:
    """One simulated rig agent on MQTT."""

    def __init__(
        self,
        endpoint: SimEndpoint,
        site: str,
        rig: str,
        *,
        mac: str,
        model: str = "Antminer S19j Pro",
        make: str = "Bitmain",
        nameplate_ths: float = 100.0,
        nameplate_w: float = 3050.0,
        interval_s: float = 5.0,
        prefix: str = DEFAULT_PREFIX,
        seed: int | None = None,
        ignore_commands: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.site, self.rig, self.mac = site, rig, mac.lower()
        self.model, self.make = model, make
        self.nameplate_ths, self.nameplate_w = nameplate_ths, nameplate_w
        self.interval_s = interval_s
        self.topics = RigTopics(prefix)
        self.ignore_commands = ignore_commands
        self._rng = random.Random(seed if seed is not None else hash((site, rig)))
        self._lock = threading.Lock()
        self.state = "hashing"
        self.power_target_w: int = int(nameplate_w)
        self.started_mono = time.monotonic()
        self.boot = f"{int(time.time() * 1000):x}"
        self.seq = 0
        self.commands: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        availability = self.topics.topic(site, rig, "availability")
        self.client = _client(
            endpoint, f"sim-rig-{site}-{rig}", (availability, "offline"), username=None
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    # ---- physics -------------------------------------------------------------------------
    def power_w(self) -> float:
        """What the rig draws now: about its power target while hashing, ~15 W asleep."""
        with self._lock:
            if self.state != "hashing":
                return 15.0
            return round(self.power_target_w * (1 + self._rng.uniform(-0.01, 0.01)), 1)

    def telemetry(self) -> dict[str, Any]:
        """One telemetry payload in the documented schema (RigStatus field names)."""
        with self._lock:
            self.seq += 1
            seq, state, target = self.seq, self.state, self.power_target_w
        hashing = state == "hashing"
        scale = target / self.nameplate_w
        ths = (
            round(self.nameplate_ths * scale * (1 + self._rng.uniform(-0.02, 0.02)), 2)
            if hashing
            else 0.0
        )
        board_temp = 62.0 + self._rng.uniform(-2, 2) if hashing else 28.0
        return {
            "id": f"{self.rig}-{self.boot}-{seq}",
            "ts": _now_iso(),
            "state": state,
            "mac": self.mac,
            "hostname": self.rig,
            "make": self.make,
            "model": self.model,
            "firmware": "sim-agent 1.0",
            "hashrate_ths": ths,
            "expected_hashrate_ths": self.nameplate_ths,
            "power_w": self.power_w(),
            "power_target_w": target,
            "boards": [
                {
                    "index": i,
                    "hashrate_ths": round(ths / 3, 2),
                    "temp_c": round(board_temp + i, 1),
                    "chip_temp_c": round(board_temp + 12 + i, 1) if hashing else 28.0,
                    "chips": 126,
                    "expected_chips": 126,
                }
                for i in range(3)
            ],
            "fans_rpm": [5400, 5460, 5520, 5380] if hashing else [0, 0, 0, 0],
            "uptime_s": int(time.monotonic() - self.started_mono),
            "errors": [],
        }

    # ---- MQTT ----------------------------------------------------------------------------
    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            logger.error("sim rig %s/%s refused by broker: %s", self.site, self.rig, rc)
            return
        client.publish(
            self.topics.topic(self.site, self.rig, "availability"), "online", qos=1, retain=True
        )
        client.subscribe(self.topics.topic(self.site, self.rig, "cmd"), qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            cmd = json.loads(msg.payload)
            request_id = str(cmd["id"])
        except (ValueError, KeyError, TypeError):
            logger.warning("sim rig %s: malformed command dropped", self.rig)
            return
        self.commands.append(cmd)
        if self.ignore_commands:
            return
        try:
            expires = datetime.fromisoformat(cmd["expires_at"]) if cmd.get("expires_at") else None
        except (TypeError, ValueError):
            self._ack(request_id, False, f"expires_at {cmd.get('expires_at')!r} is not ISO 8601")
            return
        if expires is not None and expires < datetime.now(UTC):
            self._ack(request_id, False, "command expired before it arrived")
            return
        ok, error, unsupported = self._apply(cmd)
        self._ack(request_id, ok, error, unsupported)
        if ok:
            self.publish_telemetry()

    def _apply(self, cmd: dict[str, Any]) -> tuple[bool, str | None, bool]:
        """Carry out one command: (ok, error, unsupported)."""
        action = cmd.get("action")
        with self._lock:
            if action == "curtail":
                self.state = "curtailed"
            elif action == "resume":
                self.state = "hashing"
            elif action == "set_power_target":
                watts = cmd.get("watts")
                lo, hi = 0.5 * self.nameplate_w, 1.1 * self.nameplate_w
                if not isinstance(watts, int) or not lo <= watts <= hi:
                    return False, f"power target {watts!r} outside {lo:.0f}-{hi:.0f} W", False
                self.power_target_w = watts
            elif action == "reboot":
                self.started_mono = time.monotonic()
            else:
                return False, f"unknown action {action!r}", True
        return True, None, False

    def _ack(self, request_id: str, ok: bool, error: str | None, unsupported: bool = False) -> None:
        body: dict[str, Any] = {"id": request_id, "ok": ok, "error": error, "state": self.state}
        if unsupported:
            body["unsupported"] = True
        self.client.publish(self.topics.topic(self.site, self.rig, "ack"), json.dumps(body), qos=1)

    def publish_telemetry(self) -> paho.MQTTMessageInfo:
        """Publish one telemetry sample now (QoS 1)."""
        payload = json.dumps(self.telemetry(), separators=(",", ":"))
        return self.client.publish(
            self.topics.topic(self.site, self.rig, "telemetry"), payload, qos=1
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.client.is_connected():
                self.publish_telemetry()

    def start(self) -> None:
        """Connect (background reconnects), then publish telemetry every `interval_s`."""
        self.client.connect_async(
            self.endpoint.host, self.endpoint.port, keepalive=15, clean_start=True
        )
        self.client.loop_start()
        self._thread = threading.Thread(target=self._loop, name=f"sim-{self.rig}", daemon=True)
        self._thread.start()

    def stop(self, graceful: bool = True) -> None:
        """Stop publishing; `graceful=False` drops the socket so the broker fires the last will."""
        self._stop.set()
        if graceful:
            self.client.publish(
                self.topics.topic(self.site, self.rig, "availability"),
                "offline",
                qos=1,
                retain=True,
            )
            self.client.disconnect()
            self.client.loop_stop()
        else:
            _drop_connection(self.client)


class _SimMeter(abc.ABC):
    def __init__(
        self,
        endpoint: SimEndpoint,
        meter_id: str,
        loads: Sequence[Callable[[], float]],
        will: tuple[str, str],
        online: tuple[str, str],
        interval_s: float,
        overhead: float,
    ) -> None:
        self.endpoint = endpoint
        self.meter_id = meter_id
        self.loads = list(loads)
        self.interval_s = interval_s
        self.overhead = overhead
        self.energy_wh = 0.0
        self._last = time.monotonic()
        self._online = online
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = _client(endpoint, f"sim-meter-{meter_id}", will)
        self.client.on_connect = self._on_connect

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if not rc.is_failure:
            client.publish(self._online[0], self._online[1], qos=1, retain=True)

    def measure(self) -> tuple[float, float]:
        """(power W, cumulative energy Wh) now: the loads plus PSU/cabling overhead."""
        power = round(sum(load() for load in self.loads) * (1 + self.overhead), 1)
        now = time.monotonic()
        self.energy_wh += power * (now - self._last) / 3600.0
        self._last = now
        return power, self.energy_wh

    @abc.abstractmethod
    def publish(self) -> None:
        """Publish one message in the device's own format."""

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if self.client.is_connected():
                self.publish()

    def start(self) -> None:
        """Connect and publish every `interval_s`."""
        self.client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=15)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._loop, name=f"sim-{self.meter_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing and disconnect (the last will marks the meter offline)."""
        self._stop.set()
        _drop_connection(self.client)


class SimTasmotaMeter(_SimMeter):
    """A Tasmota energy plug/meter: `tele/<id>/SENSOR`, LWT on `tele/<id>/LWT`."""

    def __init__(
        self,
        endpoint: SimEndpoint,
        meter_id: str,
        loads: Sequence[Callable[[], float]],
        *,
        interval_s: float = 5.0,
        overhead: float = 0.02,
    ) -> None:
        lwt = f"tele/{meter_id}/LWT"
        super().__init__(
            endpoint, meter_id, loads, (lwt, "Offline"), (lwt, "Online"), interval_s, overhead
        )

    def payload(self) -> dict[str, Any]:
        """The SENSOR payload Tasmota sends (Power W, Total kWh, local time without zone)."""
        power, energy_wh = self.measure()
        voltage = 230.0
        return {
            "Time": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
            "ENERGY": {
                "TotalStartTime": "2026-01-01T00:00:00",
                "Total": round(energy_wh / 1000.0, 3),
                "Yesterday": 0.0,
                "Today": round(energy_wh / 1000.0, 3),
                "Period": 0,
                "Power": round(power),
                "ApparentPower": round(power / 0.98),
                "ReactivePower": round(power * 0.2),
                "Factor": 0.98,
                "Voltage": int(voltage),
                "Current": round(power / voltage / 0.98, 3),
            },
        }

    def publish(self) -> None:
        """Publish one SENSOR message now."""
        self.client.publish(f"tele/{self.meter_id}/SENSOR", json.dumps(self.payload()), qos=0)


class SimShellyMeter(_SimMeter):
    """A Shelly Gen2 (Pro 1PM style): NotifyFullStatus once, then partial NotifyStatus frames."""

    def __init__(
        self,
        endpoint: SimEndpoint,
        meter_id: str,
        loads: Sequence[Callable[[], float]],
        *,
        interval_s: float = 5.0,
        overhead: float = 0.02,
    ) -> None:
        online = f"{meter_id}/online"
        super().__init__(
            endpoint, meter_id, loads, (online, "false"), (online, "true"), interval_s, overhead
        )
        self._sent_full = False
        self._energy_minute = int(time.time()) // 60

    def _frame(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "src": self.meter_id,
            "dst": f"{self.meter_id}/events",
            "method": method,
            "params": params,
        }

    def full_status(self) -> dict[str, Any]:
        """A NotifyFullStatus frame with the switch's power, energy (Wh), voltage, current."""
        power, energy_wh = self.measure()
        ts = round(time.time(), 2)
        return self._frame(
            "NotifyFullStatus",
            {
                "ts": ts,
                "switch:0": {
                    "id": 0,
                    "source": "init",
                    "output": True,
                    "apower": power,
                    "voltage": 230.1,
                    "current": round(power / 230.1, 3),
                    "aenergy": {
                        "total": round(energy_wh, 3),
                        "by_minute": [0.0, 0.0, 0.0],
                        "minute_ts": int(ts),
                    },
                    "temperature": {"tC": 41.2, "tF": 106.2},
                },
                "sys": {"mac": self.meter_id.split("-")[-1].upper(), "uptime": 3600},
            },
        )

    def partial_status(self) -> dict[str, Any]:
        """A NotifyStatus frame carrying only what changed: power and current (energy each minute)."""
        power, energy_wh = self.measure()
        ts = round(time.time(), 2)
        switch: dict[str, Any] = {"id": 0, "apower": power, "current": round(power / 230.1, 3)}
        if int(ts) // 60 != self._energy_minute:
            # like the device: the energy counter goes out once a minute, not on every change
            self._energy_minute = int(ts) // 60
            switch["aenergy"] = {"total": round(energy_wh, 3), "minute_ts": int(ts)}
        return self._frame("NotifyStatus", {"ts": ts, "switch:0": switch})

    def publish(self) -> None:
        """Publish a full frame first, partial frames after."""
        frame = self.partial_status() if self._sent_full else self.full_status()
        self._sent_full = True
        self.client.publish(f"{self.meter_id}/events/rpc", json.dumps(frame), qos=0)


@dataclass(slots=True)
class SimMqttFarm:
    """A handful of simulated MQTT rigs and the meters measuring them, started and stopped together."""

    rigs: list[SimMqttRig] = field(default_factory=list)
    meters: list[_SimMeter] = field(default_factory=list)
    # what the controller should be told about the meters (MeterBook input)
    meter_configs: list[MeterConfig] = field(default_factory=list)

    def start(self) -> None:
        """Start every device."""
        for rig in self.rigs:
            rig.start()
        for meter in self.meters:
            meter.start()

    def stop(self) -> None:
        """Stop every device."""
        for rig in self.rigs:
            rig.stop()
        for meter in self.meters:
            meter.stop()


def demo_farm(
    endpoint: SimEndpoint,
    site: str = "demo",
    rigs: int = 3,
    interval_s: float = 2.0,
    rack: str = "mqtt-rack",
) -> SimMqttFarm:
    """The demo's MQTT corner: `rigs` agents (`mqtt-rig-1..n`) on rack `rack`, a Tasmota meter
    `tasmota-rig1` on the first rig (scope rig) and a Shelly `shellypro1pm-rack1` on the rack
    (scope rack); `meter_configs` says so for the controller's `MeterBook`."""
    sims = [
        SimMqttRig(
            endpoint,
            site,
            f"mqtt-rig-{i + 1}",
            mac=f"02:00:00:00:10:{i + 1:02x}",
            interval_s=interval_s,
            seed=i,
        )
        for i in range(rigs)
    ]
    meters: list[_SimMeter] = []
    configs: list[MeterConfig] = []
    if sims:
        configs = [
            MeterConfig("tasmota-rig1", "tasmota", "rig", sims[0].rig),
            MeterConfig("shellypro1pm-rack1", "shelly", "rack", rack),
        ]
        meters.append(
            SimTasmotaMeter(endpoint, "tasmota-rig1", [sims[0].power_w], interval_s=interval_s)
        )
        meters.append(
            SimShellyMeter(
                endpoint, "shellypro1pm-rack1", [r.power_w for r in sims], interval_s=interval_s
            )
        )
    return SimMqttFarm(sims, meters, configs)
