"""Assemble a full gateway for `farmctl run`: rigs, MQTT, planning, treasury, notifications."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from controller.clock import Clock
from controller.config import FarmConfig
from controller.gateway import Gateway
from controller.notify import Notifier, channels_from_config

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def assembled_gateway(
    config: FarmConfig,
    *,
    base_dir: Path,
    sites: list[str] | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Gateway]:
    """A started gateway with every service attached; MQTT is stopped on exit."""
    from controller.mqtt_service import MqttService
    from controller.prices_service import attach_site_planning, hourly_energy_price, market_timezone
    from controller.treasury_service import attach_treasury

    gateway = Gateway(config, base_dir=base_dir, sites=sites, clock=clock)
    mqtt = MqttService(gateway) if config.mqtt.enabled else None
    publish = mqtt.notifier_publish if mqtt is not None else None
    notifier = Notifier(
        channels_from_config(config.reports, publish),
        alert_min_interval_s=config.reports.alert_min_interval_s,
        origin=gateway.origin(),
    )

    def alert(key: str, severity: str, text: str) -> None:
        notifier.alert(key, "critical" if severity == "critical" else "warning", text)

    gateway.alert_sink = alert
    if mqtt is not None:
        mqtt.alert = gateway.alert_sink
        gateway.use_driver_builder(mqtt.wrap_driver_builder(gateway.driver_builder))
    await gateway.start()  # migrations first: the services below read their tables
    if mqtt is not None:
        mqtt.start()
    site = next(s for s in config.sites if s.id in gateway.sites)
    energy_price = hourly_energy_price(
        gateway.engine, config.electricity, market_timezone(config.electricity, site.timezone)
    )
    attach_treasury(gateway, mqtt_publish=publish, electricity_price=energy_price)
    attach_site_planning(gateway, on_plan=mqtt.publish_plan if mqtt is not None else None)
    try:
        yield gateway
    finally:
        if mqtt is not None:
            mqtt.stop()
