"""The gateway on MQTT: MQTT rigs and power meters in, the bridge (states, totals, plan, sale
reports, command acks) out, operator commands turned into overrides.

One persistent-session client carries the bridge, the rig hub and the meters; a second one
(its own client id) batch-ingests rig telemetry into the store. Everything that must arrive
goes through the outbox table, so a broker restart loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from sqlalchemy import Connection

from controller.config import RigConfig
from controller.mqtt.bridge import BridgeSettings, CommandResult, MqttBridge
from controller.mqtt.client import MqttClient, settings_from_config
from controller.mqtt.ingest import TelemetryIngest
from controller.mqtt.outbox import OutboxDispatcher, enqueue
from controller.mqtt.schemas import CurtailCommand, OverrideCommand, ResumeCommand
from controller.overrides import OverrideError, add_override, until_next_hour
from controller.power import meter_book
from controller.site_targets import (
    RETAINED_STATES,
    SitePowerAck,
    TargetError,
    parse_target,
    store_target,
)
from miners.driver import RigDriver
from miners.mqtt_driver import MqttRigDriver, MqttRigHub
from miners.status import RigStatus

if TYPE_CHECKING:
    from controller.gateway import DriverBuilder, Gateway
    from forecasting.plan_types import HashingPlan

log = logging.getLogger(__name__)

AlertFn = Callable[[str, str, str], None]  # (key, severity, message)


def plan_summary(
    plan: HashingPlan, *, site: str | None = None, rigs: set[str] | None = None
) -> dict[str, Any]:
    """The plan as JSON: per group and hour, hashing or not, with the prices it was made on.

    With `rigs`, only those rigs (one site's) and the groups and hours that have some.
    """
    groups: list[dict[str, Any]] = [
        {"name": g.name, "j_per_th": g.j_per_th, "rigs": list(g.rigs)}
        for g in plan.groups
        if rigs is None or rigs.intersection(g.rigs)
    ]
    if rigs is not None:
        for g in groups:
            g["rigs"] = [r for r in g["rigs"] if r in rigs]
    kept = {g["name"] for g in groups}
    head: dict[str, Any] = {"site": site} if site is not None else {}
    return head | {
        "created_at": plan.created_at.isoformat(),
        "hashprice_usd_per_th_day": plan.hashprice_usd_per_th_day,
        "groups": groups,
        "hours": [
            {
                "start": h.start.isoformat(),
                "group": h.group,
                "hashing": h.hashing,
                "p50": round(h.price_p50, 2),
                "break_even": round(h.break_even, 2),
                "reason": h.reason,
            }
            for h in plan.hours
            if h.group in kept
        ],
    }


class MqttService:
    """The gateway's MQTT side; `start()` after the gateway is built, `stop()` at shutdown."""

    def __init__(self, gateway: Gateway, *, alert: AlertFn | None = None) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.alert = alert
        cfg = self.config.mqtt
        sites = sorted(gateway.sites)
        owns_all = set(sites) == {s.id for s in self.config.sites}
        # one config, several `farmctl run --site`: each gateway its own client id and topics
        self.gateway_id = gateway.id
        only_sites = () if owns_all else sites
        bridge_settings = BridgeSettings(
            prefix=cfg.bridge_prefix,
            gateway=self.gateway_id,
            sites=tuple(sites),
            farm_totals=owns_all,
            ha_discovery=cfg.ha_discovery,
            ha_prefix=cfg.ha_prefix,
        )
        self.client = MqttClient(
            settings_from_config(cfg, gateway=self.gateway_id, only_sites=only_sites),
            on_session_lost=self._session_lost,
            will=MqttBridge.will(bridge_settings),
        )
        self.outbox = OutboxDispatcher(gateway.engine, self.client)
        self.bridge = MqttBridge(
            self.client,
            gateway.engine,
            self.outbox,
            self._handle_command,
            bridge_settings,
            locate=self.locate,
        )
        self.hub = MqttRigHub(self.client, prefix=cfg.topic_prefix)
        self.meters = meter_book(self.config)
        self.meters.subscribe(self.client, qos=1)
        gateway.meter_book = self.meters
        self.ingest = TelemetryIngest(
            settings_from_config(
                cfg, client_id_suffix="-ingest", gateway=self.gateway_id, only_sites=only_sites
            ),
            gateway.engine,
            prefix=cfg.topic_prefix,
            site=sites[0] if len(sites) == 1 else "+",
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # A central plan's power targets, one topic per site this gateway owns.
        for site in sites:
            self.client.subscribe(self.target_topic(site), self._on_power_target, qos=1)
        gateway.site_targets.publish_ack = self.queue_target_ack
        gateway.site_targets.after_ack = self.outbox.wake
        self.target_duplicates = 0

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (in the background: a broker that is down now is retried, never fatal)."""
        self._loop = asyncio.get_running_loop()
        self.bridge.loop = self._loop
        self.client.start()
        self.outbox.start()
        self.ingest.start()
        self.gateway.poll_listeners.append(self.after_poll)

    def stop(self) -> None:
        """Disconnect; unsent outbox rows stay in the database for the next start."""
        for stop in (self.ingest.stop, self.outbox.stop, self.bridge.close, self.client.stop):
            try:
                stop()
            except Exception:
                log.exception("mqtt shutdown step failed")

    def wrap_driver_builder(self, fallback: DriverBuilder) -> DriverBuilder:
        """Drivers for `family = "mqtt"` rigs from the hub; every other rig from `fallback`."""

        async def build(rig: RigConfig) -> RigDriver:
            if rig.family == "mqtt":
                return MqttRigDriver(self.hub, rig.site, rig.address)
            return await fallback(rig)

        return build

    # ---- gateway hooks --------------------------------------------------------------------
    def after_poll(self, statuses: dict[str, RigStatus]) -> None:
        """Publish each rig's state (retained, HA discovery) and the site and farm totals."""
        site_of = {r.name: r.site for r in self.gateway.rigs}
        for name, status in statuses.items():
            self.bridge.publish_status(site_of[name], name, status)
        self.bridge.publish_totals({(site_of[n], n): s for n, s in statuses.items()})

    def publish_plan(self, plan: HashingPlan) -> None:
        """Publish each owned site's part of the current plan (retained)."""
        for site in sorted(self.gateway.sites):
            rigs = {r.name for r in self.gateway.rigs if r.site == site}
            self.bridge.publish_plan(site, plan_summary(plan, site=site, rigs=rigs))

    def locate(self, kind: str, target: str) -> set[str]:
        """The sites of the config (not only this gateway's) where rig or rack `target` is."""
        if kind == "rig":
            return {r.site for r in self.config.rigs if r.name == target}
        if kind == "rack":
            return {s.id for s in self.config.sites for rack in s.racks if rack.id == target}
        return {s.id for s in self.config.sites if s.id == target}

    def publish_report(self, topic_suffix: str, body: dict[str, Any], msg_id: str) -> None:
        """Queue a message that must arrive (sale report, alert) in the outbox."""
        topic = f"{self.config.mqtt.bridge_prefix}/{topic_suffix}"
        with self.gateway.engine.begin() as conn:
            enqueue(conn, topic, body, msg_id)
        self.outbox.wake()

    def notifier_publish(self, topic: str, payload: bytes) -> None:
        """Publisher for `controller.notify.MqttChannel`: every message through the outbox."""
        with self.gateway.engine.begin() as conn:
            enqueue(conn, topic, payload, f"note-{uuid.uuid4().hex}")
        self.outbox.wake()

    # ---- central plan: site power targets --------------------------------------------------
    def target_topic(self, site: str) -> str:
        """Where a central planner publishes the site's power targets."""
        return f"{self.config.mqtt.bridge_prefix}/{site}/power_target"

    def queue_target_ack(self, conn: Connection, ack: SitePowerAck) -> None:
        """Queue a target's ack in the caller's transaction (the one recording it)."""
        enqueue(
            conn,
            f"{self.target_topic(ack.site)}/ack",
            ack.payload(),
            f"ptack-{ack.target_id}-{ack.state}-{ack.ts.isoformat()}-{uuid.uuid4().hex[:6]}",
            retain=ack.state in RETAINED_STATES,
        )

    def _on_power_target(self, msg: paho.MQTTMessage) -> None:
        # paho's thread: stored before the handler returns, so the broker's message is
        # acknowledged only once the target is in the database (a crash before means redelivery).
        site = msg.topic.split("/")[-2]
        now = self.gateway.clock.now()
        try:
            target = parse_target(bytes(msg.payload), site)
            with self.gateway.sessions.begin() as session:
                result = store_target(session, target, [site], source="mqtt", now=now)
                if result.stored:
                    self.queue_target_ack(
                        session.connection(),
                        SitePowerAck(target.id, site, "pending", now, target.mode, target.kw),
                    )
        except TargetError as exc:
            self._reject_target(site, bytes(msg.payload), str(exc), now)
            return
        if not result.stored:
            self.target_duplicates += 1
            log.info("power target already stored; duplicate dropped", extra={"target": target.id})
            return
        self.outbox.wake()
        log.info(
            "power target received",
            extra={"target": target.id, "site": site, "mode": target.mode, "kw": target.kw},
        )
        start, end = target.window(now)
        if start <= now < end and self._loop is not None:
            # Act now rather than at the next reconcile minute.
            run = asyncio.run_coroutine_threadsafe(self.gateway.reconcile(), self._loop)
            run.add_done_callback(_log_failure)

    def _reject_target(self, site: str, payload: bytes, error: str, now: datetime) -> None:
        log.warning("power target rejected", extra={"site": site, "error": error})
        try:
            raw = json.loads(payload)
        except ValueError:
            raw = None
        target_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(target_id, str) or not 0 < len(target_id) <= 128:
            return  # nobody to answer
        ack = SitePowerAck(target_id, site, "rejected", now, reason=error)
        with self.gateway.engine.begin() as conn:
            self.queue_target_ack(conn, ack)
        self.outbox.wake()

    # ---- commands -------------------------------------------------------------------------
    def _session_lost(self) -> None:
        message = "MQTT broker had no session for us: messages queued while we were away are lost"
        log.error("mqtt session lost")
        if self.alert is not None:
            self.alert("mqtt:session_lost", "warning", message)

    async def _handle_command(
        self, command: CurtailCommand | ResumeCommand | OverrideCommand
    ) -> CommandResult:
        now = self.gateway.clock.now()
        target = command.target
        try:
            if isinstance(command, OverrideCommand):
                desired, start, end = command.state, command.start, command.end
            else:
                desired = "curtailed" if isinstance(command, CurtailCommand) else "hashing"
                start, end = now, until_next_hour(now)
            override_id = await asyncio.to_thread(
                add_override,
                self.gateway.sessions,
                self.config,
                target.kind,
                target.id,
                desired,
                start,
                end,
                source="mqtt",
                reason=command.reason or f"mqtt command {command.id}",
                now=now,
            )
        except OverrideError as exc:
            return CommandResult(ok=False, error=str(exc))
        report = None
        if start <= now:
            # Act now rather than at the next reconcile minute; the report says what happened.
            report = await self.gateway.reconcile()
        detail: dict[str, Any] = {"override_id": override_id, "until": end.isoformat()}
        if report is not None:
            detail |= {
                "curtailed": report.curtailed,
                "resumed": report.resumed,
                "failed": report.failed,
                "skipped_offline": report.skipped_offline,
            }
        return CommandResult(ok=not (report and report.failed), detail=detail)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("reconcile for a new power target failed", exc_info=future.exception())
