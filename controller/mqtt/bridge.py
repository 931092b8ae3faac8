"""The controller on MQTT: what it publishes, what operators (and Home Assistant) may ask it.

Published (prefix `farmctl`, configurable):

    farmctl/availability                 "online"/"offline" (retained, last will)
    farmctl/<site>/rig/<rig>/state       normalized RigStatus JSON (retained)
    farmctl/<site>/totals                site totals (retained)
    farmctl/totals                       farm totals (retained)
    farmctl/plan                         the current hashing plan (retained)
    farmctl/sales/<report id>            sale reports, through the outbox (QoS 1)
    farmctl/cmd/ack                      command acks, through the outbox (QoS 1)

Subscribed:

    farmctl/cmd                          operator commands (JSON, see `schemas.py`)
    farmctl/<site>/rig/<rig>/hashing/set Home Assistant switch: "ON" resumes, "OFF" curtails

With Home Assistant discovery on, each rig becomes a device with sensors (hashrate, power,
efficiency, temperatures, state) and a switch (hashing on/off), announced retained under
`<discovery prefix>/<component>/<node>/<object>/config`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from pydantic import ValidationError
from sqlalchemy import Connection, Engine

from controller.mqtt.client import MqttClient
from controller.mqtt.dedup import SeenMessages
from controller.mqtt.outbox import OutboxDispatcher, encode_payload, enqueue
from controller.mqtt.schemas import (
    OPERATOR_COMMAND,
    CommandAck,
    CurtailCommand,
    OverrideCommand,
    ResumeCommand,
    TargetRef,
)
from miners.status import RigStatus

logger = logging.getLogger(__name__)

Command = CurtailCommand | ResumeCommand | OverrideCommand
MAX_COMMAND_BYTES = 16 * 1024


@dataclass(slots=True)
class CommandResult:
    """What the daemon did with an operator command (`detail` is echoed in the ack)."""

    ok: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


CommandHandler = Callable[[Command], CommandResult | Awaitable[CommandResult]]


@dataclass(slots=True)
class BridgeSettings:
    """Topic prefix and Home Assistant discovery options."""

    prefix: str = "farmctl"
    ha_discovery: bool = True
    ha_prefix: str = "homeassistant"
    handler_timeout_s: float = 60.0
    # sale reports wait for the receiver's receipt on `<prefix>/receipts` (see outbox.py)
    sale_receipts: bool = False

    @property
    def receipt_topic(self) -> str:
        """Where receivers confirm sale reports (give it to `OutboxDispatcher(receipt_topic=)`)."""
        return f"{self.prefix}/receipts"


def _node(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


@dataclass(frozen=True, slots=True)
class _Sensor:
    key: str
    name: str
    template: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    icon: str | None = None


_SENSORS: tuple[_Sensor, ...] = (
    _Sensor("hashrate", "Hashrate", "{{ value_json.hashrate_ths }}", "TH/s", icon="mdi:pickaxe"),
    _Sensor("power", "Power", "{{ value_json.power_w }}", "W", "power"),
    _Sensor(
        "efficiency", "Efficiency", "{{ value_json.efficiency_jth }}", "J/TH", icon="mdi:flash"
    ),
    _Sensor("temperature", "Board temperature", "{{ value_json.temp_c_max }}", "°C", "temperature"),
    _Sensor(
        "chip_temperature",
        "Chip temperature",
        "{{ value_json.chip_temp_c_max }}",
        "°C",
        "temperature",
    ),
    _Sensor("state", "State", "{{ value_json.state }}", None, "enum", None),
)


def status_payload(site: str, rig: str, status: RigStatus) -> dict[str, Any]:
    """The JSON published for one rig: RigStatus fields plus site, rig and max temperatures."""
    body = status.to_dict()
    temps = [b.temp_c for b in status.boards if b.temp_c is not None]
    chips = [b.chip_temp_c for b in status.boards if b.chip_temp_c is not None]
    body.update(
        site=site,
        rig=rig,
        temp_c_max=max(temps) if temps else None,
        chip_temp_c_max=max(chips) if chips else None,
    )
    return body


def totals(statuses: Iterable[RigStatus]) -> dict[str, Any]:
    """Rig counts by state, hashrate, power and fleet efficiency of a set of rigs."""
    counts = {"hashing": 0, "curtailed": 0, "idle": 0, "offline": 0, "error": 0}
    hashrate = 0.0
    power = 0.0
    rigs = 0
    for s in statuses:
        rigs += 1
        counts[s.state] = counts.get(s.state, 0) + 1
        hashrate += s.hashrate_ths or 0.0
        power += s.power_w or 0.0
    return {
        "rigs": rigs,
        "states": counts,
        "hashrate_ths": round(hashrate, 3),
        "power_w": round(power, 1),
        "efficiency_jth": round(power / hashrate, 3) if hashrate > 0 else None,
    }


class MqttBridge:
    """Publishes the farm's state and answers operator commands, on one `MqttClient`."""

    def __init__(
        self,
        client: MqttClient,
        engine: Engine,
        outbox: OutboxDispatcher,
        handler: CommandHandler,
        settings: BridgeSettings | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.outbox = outbox
        self.handler = handler
        self.settings = settings or BridgeSettings()
        self.loop = loop
        self.seen = SeenMessages(engine, "operator-cmd")
        self._announced: set[tuple[str, str]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-cmd")
        self.rejected = 0
        p = self.settings.prefix
        client.subscribe(f"{p}/cmd", self._on_command, qos=1)
        client.subscribe(f"{p}/+/rig/+/hashing/set", self._on_switch, qos=1)
        client.add_connect_listener(self._on_connect)

    @staticmethod
    def will(prefix: str = "farmctl") -> tuple[str, bytes, int, bool]:
        """The last will to give the `MqttClient`: availability goes `offline` if we vanish."""
        return (f"{prefix}/availability", b"offline", 1, True)

    # ---- topics ----------------------------------------------------------------------------
    def rig_topic(self, site: str, rig: str) -> str:
        """Where one rig's normalized status is published."""
        return f"{self.settings.prefix}/{site}/rig/{rig}/state"

    @property
    def ack_topic(self) -> str:
        """Where command acks go."""
        return f"{self.settings.prefix}/cmd/ack"

    # ---- publishing ------------------------------------------------------------------------
    def _on_connect(self, session_present: bool) -> None:
        self.client.client.publish(
            f"{self.settings.prefix}/availability", "online", qos=1, retain=True
        )
        self._announced.clear()  # re-announce discovery: the broker may have lost retained configs

    def publish_status(self, site: str, rig: str, status: RigStatus) -> bool:
        """Publish one rig's status (retained); announces it to Home Assistant the first time."""
        if (
            self.settings.ha_discovery
            and (site, rig) not in self._announced
            and self.client.connected
        ):
            for topic, config in self.discovery_configs(site, rig, status).items():
                self.client.publish_if_connected(topic, json.dumps(config), qos=1, retain=True)
            self._announced.add((site, rig))
        payload = json.dumps(status_payload(site, rig, status), default=str)
        return self.client.publish_if_connected(
            self.rig_topic(site, rig), payload, qos=1, retain=True
        )

    def publish_totals(self, statuses: Mapping[tuple[str, str], RigStatus]) -> dict[str, Any]:
        """Publish per-site and farm totals of `{(site, rig): status}`; returns the farm totals."""
        by_site: dict[str, list[RigStatus]] = {}
        for (site, _rig), status in statuses.items():
            by_site.setdefault(site, []).append(status)
        now = datetime.now(UTC).isoformat()
        for site, group in by_site.items():
            body = {"site": site, "ts": now, **totals(group)}
            self.client.publish_if_connected(
                f"{self.settings.prefix}/{site}/totals", json.dumps(body), qos=1, retain=True
            )
        farm = {"ts": now, "sites": len(by_site), **totals(statuses.values())}
        self.client.publish_if_connected(
            f"{self.settings.prefix}/totals", json.dumps(farm), qos=1, retain=True
        )
        return farm

    def publish_plan(self, plan: Mapping[str, Any]) -> bool:
        """Publish the current hashing plan (JSON-able mapping), retained."""
        return self.client.publish_if_connected(
            f"{self.settings.prefix}/plan", encode_payload(dict(plan)), qos=1, retain=True
        )

    def enqueue_sale_report(
        self, conn: Connection, report_id: str, report: Mapping[str, Any]
    ) -> bool:
        """Queue a sale report in the caller's transaction (the one writing the sale).

        Delivered at least once; its msg_id `sale-<report_id>` lets receivers drop repeats.
        Call `outbox.wake()` after the commit.
        """
        body = {"id": report_id, **report}
        return enqueue(
            conn,
            f"{self.settings.prefix}/sales/{report_id}",
            body,
            f"sale-{report_id}",
            confirm=self.settings.sale_receipts,
        )

    # ---- Home Assistant discovery ----------------------------------------------------------
    def discovery_configs(
        self, site: str, rig: str, status: RigStatus
    ) -> dict[str, dict[str, Any]]:
        """Discovery topic -> config payload for one rig's sensors and hashing switch."""
        node = _node(f"farmctl_{site}_{rig}")
        ha = self.settings.ha_prefix
        state_topic = self.rig_topic(site, rig)
        device: dict[str, Any] = {
            "identifiers": [node],
            "name": f"{rig} ({site})",
            "manufacturer": status.make or "unknown",
            "model": status.model or "unknown",
        }
        if status.firmware:
            device["sw_version"] = status.firmware
        if status.mac:
            device["connections"] = [["mac", status.mac]]
        availability = [{"topic": f"{self.settings.prefix}/availability"}]
        out: dict[str, dict[str, Any]] = {}
        for sensor in _SENSORS:
            config: dict[str, Any] = {
                "name": sensor.name,
                "unique_id": f"{node}_{sensor.key}",
                "object_id": f"{node}_{sensor.key}",
                "state_topic": state_topic,
                "value_template": sensor.template,
                "availability": availability,
                "device": device,
            }
            if sensor.unit:
                config["unit_of_measurement"] = sensor.unit
            if sensor.device_class:
                config["device_class"] = sensor.device_class
            if sensor.state_class:
                config["state_class"] = sensor.state_class
            if sensor.icon:
                config["icon"] = sensor.icon
            if sensor.key == "state":
                config["options"] = ["hashing", "curtailed", "idle", "offline", "error"]
            out[f"{ha}/sensor/{node}/{sensor.key}/config"] = config
        out[f"{ha}/switch/{node}/hashing/config"] = {
            "name": "Hashing",
            "unique_id": f"{node}_hashing",
            "object_id": f"{node}_hashing",
            "state_topic": state_topic,
            "value_template": "{{ 'ON' if value_json.state == 'hashing' else 'OFF' }}",
            "command_topic": f"{self.settings.prefix}/{site}/rig/{rig}/hashing/set",
            "payload_on": "ON",
            "payload_off": "OFF",
            "state_on": "ON",
            "state_off": "OFF",
            "availability": availability,
            "device": device,
            "icon": "mdi:pickaxe",
        }
        return out

    # ---- commands (paho thread: parse, then hand over to the command worker) ---------------
    def _ack(self, command_id: str | None, result: CommandResult) -> None:
        ack = CommandAck(
            id=command_id,
            ok=result.ok,
            error=result.error,
            detail=result.detail,
            ts=datetime.now(UTC),
        )
        msg_id = f"ack-{command_id or uuid.uuid4().hex}"
        with self.engine.begin() as conn:
            enqueue(conn, self.ack_topic, ack.model_dump(mode="json"), msg_id)
        self.outbox.wake()

    def _reject(self, command_id: str | None, error: str, topic: str) -> None:
        self.rejected += 1
        logger.warning("operator command rejected topic=%s id=%s: %s", topic, command_id, error)
        if command_id is not None:
            self._executor.submit(self._ack, command_id, CommandResult(False, error))

    def _on_command(self, msg: paho.MQTTMessage) -> None:
        if len(msg.payload) > MAX_COMMAND_BYTES:
            self._reject(
                None, f"command of {len(msg.payload)} bytes exceeds {MAX_COMMAND_BYTES}", msg.topic
            )
            return
        try:
            raw = json.loads(msg.payload)
        except (ValueError, UnicodeDecodeError) as exc:
            self._reject(None, f"command is not JSON: {exc}", msg.topic)
            return
        command_id = raw.get("id") if isinstance(raw, dict) else None
        command_id = (
            command_id if isinstance(command_id, str) and 0 < len(command_id) <= 128 else None
        )
        try:
            command = OPERATOR_COMMAND.validate_python(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'command'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            self._reject(command_id, f"invalid command: {problems}", msg.topic)
            return
        self._executor.submit(self._execute, command)

    def _on_switch(self, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        site, rig = parts[-5], parts[-3]
        text = bytes(msg.payload).decode(errors="replace").strip().upper()
        if text not in ("ON", "OFF"):
            self._reject(None, f"switch payload {text[:20]!r} is not ON/OFF", msg.topic)
            return
        target = TargetRef(kind="rig", id=rig, site=site)
        command_id = f"ha-{uuid.uuid4().hex}"
        command: Command = (
            ResumeCommand(
                id=command_id, action="resume", target=target, reason="Home Assistant switch"
            )
            if text == "ON"
            else CurtailCommand(
                id=command_id, action="curtail", target=target, reason="Home Assistant switch"
            )
        )
        self._executor.submit(self._execute, command)

    # ---- command worker --------------------------------------------------------------------
    def _run_handler(self, command: Command) -> CommandResult:
        outcome = self.handler(command)
        if isinstance(outcome, CommandResult):
            return outcome
        if self.loop is None:
            raise RuntimeError("async command handler given without an event loop")
        future = asyncio.run_coroutine_threadsafe(_awaited(outcome), self.loop)
        return future.result(self.settings.handler_timeout_s)

    def _execute(self, command: Command) -> None:
        # Claim the id first: a redelivered command (QoS 1 after a broker restart) is dropped,
        # its first ack is already in the outbox. A crash mid-handling leaves it claimed and
        # unanswered: the operator sees no ack and sends a new command.
        try:
            with self.engine.begin() as conn:
                fresh = self.seen.claim(conn, command.id)
        except Exception:
            logger.exception(
                "operator command id=%s could not be recorded; not executed", command.id
            )
            return
        if not fresh:
            self.seen.duplicates += 1
            logger.info("operator command id=%s already handled; duplicate dropped", command.id)
            return
        logger.info(
            "operator command id=%s action=%s target=%s:%s",
            command.id,
            command.action,
            command.target.kind,
            command.target.id,
        )
        try:
            result = self._run_handler(command)
        except Exception as exc:
            logger.exception("operator command id=%s failed", command.id)
            result = CommandResult(False, f"{command.action} failed: {exc}")
        try:
            self._ack(command.id, result)
        except Exception:
            logger.exception("operator command id=%s: ack could not be queued", command.id)

    def close(self) -> None:
        """Wait for the command worker to finish what it is doing."""
        self._executor.shutdown(wait=True)


async def _awaited(awaitable: Awaitable[CommandResult]) -> CommandResult:
    return await awaitable
