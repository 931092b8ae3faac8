"""The controller on MQTT: what it publishes, what operators (and Home Assistant) may ask it.

Every topic a gateway publishes carries the site or the gateway it comes from, so several
gateways (`farmctl run --site ...`) share one broker without overwriting each other.

Published (prefix `farmctl`, configurable):

    farmctl/gateway/<gateway>/availability  "online"/"offline" (retained, last will)
    farmctl/<site>/rig/<rig>/state          normalized RigStatus JSON (retained)
    farmctl/<site>/totals                   site totals (retained)
    farmctl/totals                          farm totals (retained), only from a gateway that
                                            owns every site (`BridgeSettings.farm_totals`)
    farmctl/<site>/plan                     the site's part of the hashing plan (retained)
    farmctl/sales/<report id>               sale reports, through the outbox (QoS 1)
    farmctl/<site>/cmd/ack                  command acks, through the outbox (QoS 1)

Subscribed, for each site the gateway owns (every site when `BridgeSettings.sites` is empty):

    farmctl/<site>/cmd                      operator commands (JSON, see `schemas.py`)
    farmctl/<site>/rig/<rig>/hashing/set    Home Assistant switch: "ON" resumes, "OFF" curtails

A command whose target is not at the topic's site is refused (ack `ok: false`), never run.

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
# (kind, id) -> the sites where a rig or rack of that id is; empty when unknown
SiteLocator = Callable[[str, str], set[str]]


@dataclass(slots=True)
class BridgeSettings:
    """Topic prefix and Home Assistant discovery options."""

    prefix: str = "farmctl"
    # this gateway's id (`controller.gateway.gateway_id`) and the sites it owns; no sites means
    # every site (one gateway for the whole farm)
    gateway: str = "farmctl"
    sites: tuple[str, ...] = ()
    # publish `<prefix>/totals`: only one gateway may, the one owning every site
    farm_totals: bool = True
    ha_discovery: bool = True
    ha_prefix: str = "homeassistant"
    handler_timeout_s: float = 60.0
    # sale reports wait for the receiver's receipt on `<prefix>/receipts` (see outbox.py)
    sale_receipts: bool = False

    @property
    def receipt_topic(self) -> str:
        """Where receivers confirm sale reports (give it to `OutboxDispatcher(receipt_topic=)`)."""
        return f"{self.prefix}/receipts"

    @property
    def availability_topic(self) -> str:
        """This gateway's `online`/`offline` (retained; the last will)."""
        return f"{self.prefix}/gateway/{self.gateway}/availability"

    @property
    def site_levels(self) -> list[str]:
        """The site topic level of each subscription: the owned sites, or `+` for all."""
        return list(self.sites) or ["+"]


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
        locate: SiteLocator | None = None,
    ) -> None:
        self.client = client
        self.engine = engine
        self.outbox = outbox
        self.handler = handler
        self.settings = settings or BridgeSettings()
        self.loop = loop
        self.locate = locate
        self.seen = SeenMessages(engine, "operator-cmd")
        self._announced: set[tuple[str, str]] = set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-cmd")
        self.rejected = 0
        p = self.settings.prefix
        for site in self.settings.site_levels:
            client.subscribe(f"{p}/{site}/cmd", self._on_command, qos=1)
            client.subscribe(f"{p}/{site}/rig/+/hashing/set", self._on_switch, qos=1)
        client.add_connect_listener(self._on_connect)

    @staticmethod
    def will(settings: BridgeSettings) -> tuple[str, bytes, int, bool]:
        """The last will to give the `MqttClient`: the gateway goes `offline` if it vanishes."""
        return (settings.availability_topic, b"offline", 1, True)

    # ---- topics ----------------------------------------------------------------------------
    def rig_topic(self, site: str, rig: str) -> str:
        """Where one rig's normalized status is published."""
        return f"{self.settings.prefix}/{site}/rig/{rig}/state"

    def ack_topic(self, site: str) -> str:
        """Where acks of the commands sent on the site's command topic go."""
        return f"{self.settings.prefix}/{site}/cmd/ack"

    # ---- publishing ------------------------------------------------------------------------
    def _on_connect(self, session_present: bool) -> None:
        self.client.client.publish(self.settings.availability_topic, "online", qos=1, retain=True)
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
        """Publish per-site totals of `{(site, rig): status}`, and the farm totals when this
        gateway owns every site; returns the totals of all of `statuses`."""
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
        if self.settings.farm_totals:
            self.client.publish_if_connected(
                f"{self.settings.prefix}/totals", json.dumps(farm), qos=1, retain=True
            )
        return farm

    def publish_plan(self, site: str, plan: Mapping[str, Any]) -> bool:
        """Publish the site's part of the current hashing plan (JSON-able mapping), retained."""
        return self.client.publish_if_connected(
            f"{self.settings.prefix}/{site}/plan", encode_payload(dict(plan)), qos=1, retain=True
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
        availability = [{"topic": self.settings.availability_topic}]
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
    def _ack(self, site: str, command_id: str | None, result: CommandResult) -> None:
        ack = CommandAck(
            id=command_id,
            ok=result.ok,
            error=result.error,
            detail=result.detail,
            ts=datetime.now(UTC),
        )
        msg_id = f"ack-{command_id or uuid.uuid4().hex}"
        with self.engine.begin() as conn:
            enqueue(conn, self.ack_topic(site), ack.model_dump(mode="json"), msg_id)
        self.outbox.wake()

    def _reject(self, command_id: str | None, error: str, topic: str) -> None:
        self.rejected += 1
        logger.warning("operator command rejected topic=%s id=%s: %s", topic, command_id, error)
        if command_id is not None:
            site = _topic_site(topic, self.settings.prefix)
            self._executor.submit(self._ack, site, command_id, CommandResult(False, error))

    def misdirected(self, target: TargetRef, site: str) -> str | None:
        """Why a command on `site`'s topic must not run here, or None when it may.

        The target must be at that site, and the site must be this gateway's: otherwise
        another gateway owns it (its override row would act on rigs this one does not run).
        """
        if self.settings.sites and site not in self.settings.sites:
            return f"site {site!r} is not run by gateway {self.settings.gateway}"
        p = self.settings.prefix
        if target.site is not None and target.site != site:
            return (
                f"target site {target.site!r} sent on {p}/{site}/cmd; "
                f"send it on {p}/{target.site}/cmd"
            )
        if target.kind == "site":
            if target.id != site:
                return f"site {target.id!r} sent on {p}/{site}/cmd; send it on {p}/{target.id}/cmd"
            return None
        if self.locate is None:
            return None
        where = self.locate(target.kind, target.id)
        if not where:
            return None  # unknown: the handler refuses it with the list of known ids
        if site not in where:
            return (
                f"{target.kind} {target.id!r} is at site {', '.join(sorted(where))}, "
                f"not {site!r}; send it on {p}/{sorted(where)[0]}/cmd"
            )
        if len(where) > 1:
            # an override names a rack by id only: it would act at every site with that rack
            return (
                f"{target.kind} {target.id!r} exists at sites {', '.join(sorted(where))}; "
                "target its rigs instead"
            )
        return None

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
        site = _topic_site(msg.topic, self.settings.prefix)
        refused = self.misdirected(command.target, site)
        if refused is not None:
            # refused before its id is claimed: resent on the right topic, it runs there
            self._reject(command_id, refused, msg.topic)
            return
        self._executor.submit(self._execute, site, command)

    def _on_switch(self, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        site, rig = parts[-5], parts[-3]
        text = bytes(msg.payload).decode(errors="replace").strip().upper()
        if text not in ("ON", "OFF"):
            self._reject(None, f"switch payload {text[:20]!r} is not ON/OFF", msg.topic)
            return
        target = TargetRef(kind="rig", id=rig, site=site)
        refused = self.misdirected(target, site)
        if refused is not None:
            self._reject(None, refused, msg.topic)
            return
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
        self._executor.submit(self._execute, site, command)

    # ---- command worker --------------------------------------------------------------------
    def _run_handler(self, command: Command) -> CommandResult:
        outcome = self.handler(command)
        if isinstance(outcome, CommandResult):
            return outcome
        if self.loop is None:
            raise RuntimeError("async command handler given without an event loop")
        future = asyncio.run_coroutine_threadsafe(_awaited(outcome), self.loop)
        return future.result(self.settings.handler_timeout_s)

    def _execute(self, site: str, command: Command) -> None:
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
            "operator command id=%s site=%s action=%s target=%s:%s",
            command.id,
            site,
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
            self._ack(site, command.id, result)
        except Exception:
            logger.exception("operator command id=%s: ack could not be queued", command.id)

    def close(self) -> None:
        """Wait for the command worker to finish what it is doing."""
        self._executor.shutdown(wait=True)


def _topic_site(topic: str, prefix: str) -> str:
    """The site level of `<prefix>/<site>/...` (prefixes may have several levels)."""
    return topic[len(prefix) + 1 :].split("/", 1)[0]


async def _awaited(awaitable: Awaitable[CommandResult]) -> CommandResult:
    return await awaitable
