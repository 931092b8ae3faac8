"""The gateway: one site's rigs, their latest status, the plan they follow, and the jobs' bodies.

The scheduler's job functions (controller/jobs.py) call into the one running `Gateway`. Every
consumer (metrics, MQTT bridge, reconcile, CLI views) reads the statuses the poll job stored
here: one poll per rig, like Home Assistant's coordinator.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from controller import migrate, partitions
from controller.clock import Clock
from controller.config import FarmConfig, RigConfig
from controller.metrics import FarmMetrics, RigLabels
from controller.power import placements, resolve_fleet_power_placed
from controller.reconcile import ReconcileReport, ReconcileSettings, RigPlace, reconcile
from controller.site_targets import SiteTargets
from controller.storage import make_engine, session_factory
from controller.tables import JobRun, RigRecord
from controller.telemetry_store import TELEMETRY, write_telemetry
from miners.credentials import RigCredentials
from miners.driver import RigDriver
from miners.fleet import FleetPoller, Target
from miners.health import HealthEvent, HealthMonitor, default_rules
from miners.meters import MeterBook
from miners.status import RigStatus

log = logging.getLogger(__name__)

DriverBuilder = Callable[[RigConfig], Awaitable[RigDriver]]
AlertSink = Callable[[str, str, str], None]  # (key, severity, message)


def rig_target(rig: RigConfig) -> Target:
    """The poll target of a configured rig (MQTT rigs get port 0: they have no socket)."""
    if rig.family == "mqtt":
        return Target(rig.address, 0)
    host, _, port = rig.address.rpartition(":")
    if host and port.isdigit():
        return Target(host, int(port))
    return Target(rig.address, 80 if rig.family == "bitaxe" else 4028)


def rig_credentials(rig: RigConfig) -> RigCredentials | None:
    """The rig's login from its secret reference, None when it has no password configured."""
    if rig.credentials.password is None:
        return None
    secret = rig.credentials.password.resolve_or_none()
    if secret is None:
        log.warning(
            "rig password not available",
            extra={"rig": rig.name, "source": rig.credentials.password.describe()},
        )
        return None
    return RigCredentials(rig.credentials.username, secret)


async def build_rpc_driver(rig: RigConfig) -> RigDriver:
    """Driver of an RPC/HTTP rig: the configured family, or detected when `auto`."""
    from miners.detect import make_driver

    target = rig_target(rig)
    family = None if rig.family == "auto" else rig.family
    http_port = rig.http_port or (target.port if rig.family == "bitaxe" else 80)
    return await make_driver(
        target.host,
        target.port,
        family=family,
        credentials=rig_credentials(rig),
        http_port=http_port,
    )


@dataclass(slots=True)
class GatewayState:
    """What the gateway knows right now (read by metrics, the bridge and the live view)."""

    statuses: dict[str, RigStatus] = field(default_factory=dict)
    last_poll_at: datetime | None = None
    last_reconcile: ReconcileReport | None = None
    alerts: list[HealthEvent] = field(default_factory=list)


def gateway_id(config: FarmConfig, sites: set[str]) -> str:
    """A stable id for a gateway: farm name and the sites it owns (its MQTT client id, topics,
    job store and job_run rows carry it)."""
    raw = f"{config.farm.name}_{'_'.join(sorted(sites))}"
    return re.sub(r"[^A-Za-z0-9_]", "_", raw)[:48]


class Gateway:
    """One gateway process: its rigs, database, metrics and the bodies of the scheduled jobs."""

    def __init__(
        self,
        config: FarmConfig,
        *,
        base_dir: Path,
        clock: Clock | None = None,
        metrics: FarmMetrics | None = None,
        driver_builder: DriverBuilder = build_rpc_driver,
        alert_sink: AlertSink | None = None,
        sites: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.base_dir = base_dir
        self.clock = clock or Clock()
        self.metrics = metrics or FarmMetrics()
        self.state = GatewayState()
        self.sites = set(sites) if sites else {s.id for s in config.sites}
        self.id = gateway_id(config, self.sites)
        self.rigs = [r for r in config.rigs if r.site in self.sites]
        self._driver_builder = driver_builder
        self.alert_sink = alert_sink
        self.database_url = config.database_url(base_dir)
        self.engine = make_engine(
            self.database_url, busy_timeout_ms=config.database.busy_timeout_ms
        )
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        self.drivers: dict[str, RigDriver] = {}
        self._name_by_target = {rig_target(r): r.name for r in self.rigs}
        self.poller: FleetPoller | None = None
        self.health = HealthMonitor(default_rules())
        # Called with every poll's statuses (the MQTT bridge publishes them).
        self.poll_listeners: list[Callable[[dict[str, RigStatus]], None]] = []
        self.meter_book = MeterBook([])
        self._known_identity: dict[str, str | None] = {}  # rig -> MAC already in the inventory
        self._placements = placements(self.rigs)
        # A central plan's site power targets cap what the plan wants (controller/site_targets.py).
        self.site_targets = SiteTargets(self.sites, self.rigs)
        # One reconcile at a time: the scheduled one, an MQTT command's or a new target's.
        self._reconcile_lock = asyncio.Lock()
        self.reconcile_settings = ReconcileSettings(
            batch_size=config.planner.stagger_batch, batch_delay_s=config.planner.stagger_delay_s
        )

    def origin(self) -> dict[str, str]:
        """Who speaks in this gateway's alerts and reports: its id and its sites."""
        return {"gateway": self.id, "sites": ",".join(sorted(self.sites))}

    @property
    def places(self) -> list[RigPlace]:
        """Site and rack of every rig this gateway owns."""
        return [RigPlace(r.name, r.site, r.rack) for r in self.rigs]

    def labels(self) -> dict[str, RigLabels]:
        """Metric labels of every rig."""
        return {r.name: RigLabels(r.site, r.rack or "", r.name, r.model or "") for r in self.rigs}

    def use_driver_builder(self, builder: DriverBuilder) -> None:
        """Replace how rig drivers are built (before `start()`; MQTT rigs need the hub)."""
        self._driver_builder = builder

    @property
    def driver_builder(self) -> DriverBuilder:
        """How rig drivers are built."""
        return self._driver_builder

    async def start(self) -> None:
        """Migrate the database, record the rig inventory and build every rig's driver (once)."""
        if self.poller is not None:
            return
        await asyncio.to_thread(migrate.upgrade, self.database_url)
        await asyncio.to_thread(self._prepare_telemetry_partitions)
        await asyncio.to_thread(self._sync_inventory)
        for rig in self.rigs:
            try:
                self.drivers[rig.name] = await self._driver_builder(rig)
            except Exception as exc:  # one unreachable rig must not keep the farm from starting
                log.warning("rig driver not ready", extra={"rig": rig.name, "error": str(exc)})
        self.poller = FleetPoller(
            [rig_target(r) for r in self.rigs],
            drivers={rig_target(r): d for r in self.rigs if (d := self.drivers.get(r.name))},
            driver_factory=self._late_driver,
            concurrency=256,
            rig_timeout_s=5.0,
            clock=lambda: self.clock.now(),
        )

    def _prepare_telemetry_partitions(self) -> None:
        # A gateway down longer than the days created ahead would otherwise write into the
        # default partition until the next daily housekeeping.
        if self.config.database.telemetry_partitioning != "native":
            return
        with self.engine.connect() as conn:
            if not partitions.is_partitioned(conn, TELEMETRY.name):
                return
        partitions.ensure_partitions(
            self.engine, TELEMETRY.name, self.clock.now().astimezone(UTC).date()
        )

    async def _late_driver(self, host: str, port: int) -> RigDriver:
        # A rig that was down at start gets its driver on the first poll that reaches it.
        name = self._name_by_target[Target(host, port)]
        rig = next(r for r in self.rigs if r.name == name)
        driver = await self._driver_builder(rig)
        self.drivers[name] = driver
        return driver

    def _sync_inventory(self) -> None:
        with self.sessions.begin() as session:
            known = {r.name: r for r in session.scalars(select(RigRecord))}
            for rig in self.rigs:
                row = known.get(rig.name) or RigRecord(name=rig.name)
                row.site, row.rack, row.address = rig.site, rig.rack, rig.address
                row.family, row.model = rig.family, rig.model
                row.mac = row.mac or rig.mac
                session.add(row)

    async def poll(self) -> list[RigStatus]:
        """Poll every rig once inside the deadline; store telemetry, update metrics and health."""
        if self.poller is None:
            raise RuntimeError("gateway not started")
        deadline = max(1.0, min(20.0, self.config.scheduler.poll_interval_s * 0.8))
        statuses = await self.poller.poll_once(deadline_s=deadline)
        now = self.clock.now()
        by_name = resolve_fleet_power_placed(
            {
                self._name_by_target[target]: status
                for target, status in zip(self.poller.targets, statuses, strict=True)
            },
            self._placements,
            self.meter_book,
            self.config.mqtt.meter_silence_s,
        )
        self.state.statuses = by_name
        self.state.last_poll_at = now
        self.metrics.observe_rigs(by_name, self.labels())
        await asyncio.to_thread(self._store_poll, by_name, now)
        await self._acknowledge_targets(now)
        for listener in self.poll_listeners:
            try:
                listener(by_name)
            except Exception:  # a consumer's failure must not lose the poll
                log.exception("poll listener failed")
        events = self.health.evaluate(list(by_name.values()), now)
        self.state.alerts = [e for e in self.state.alerts if e.kind == "fired"][-100:] + events
        for event in events:
            if event.kind == "fired" and self.alert_sink is not None:
                self.alert_sink(f"health:{event.rule}:{event.rig}", event.severity, event.message)
        return list(by_name.values())

    def _store_poll(self, statuses: dict[str, RigStatus], now: datetime) -> None:
        site_of = {r.name: r.site for r in self.rigs}
        rows = []
        for name, s in statuses.items():
            temps = [b.temp_c for b in s.boards if b.temp_c is not None]
            chips = [b.chip_temp_c for b in s.boards if b.chip_temp_c is not None]
            rows.append(
                {
                    "msg_id": f"poll:{name}:{now.isoformat()}",
                    "time": now,
                    "received_at": now,
                    "site": site_of[name],
                    "rig": name,
                    "mac": s.mac,
                    "state": s.state,
                    "hashrate_ths": s.hashrate_ths,
                    "power_w": s.power_w,
                    "power_source": s.power_source,
                    "temp_c": max(temps) if temps else None,
                    "chip_temp_c": max(chips) if chips else None,
                }
            )
        live = [n for n, st in statuses.items() if st.state != "offline"]
        # Only a rig whose identity is new or changed needs its own row write; the rest is one
        # bulk UPDATE (row-by-row ORM updates cost ~1 ms per rig at 5,000 rigs every poll).
        changed = {
            n: statuses[n].mac
            for n in live
            if n not in self._known_identity
            or (statuses[n].mac and statuses[n].mac != self._known_identity[n])
        }
        with self.sessions.begin() as session:
            if rows:
                write_telemetry(session.connection(), rows)
            if live:
                session.execute(
                    update(RigRecord).where(RigRecord.name.in_(live)).values(last_seen=now)
                )
            for record in session.scalars(
                select(RigRecord).where(RigRecord.name.in_(list(changed)))
            ):
                record.mac = changed[record.name] or record.mac
                record.first_seen = record.first_seen or now
        for name, mac in changed.items():
            self._known_identity[name] = mac or self._known_identity.get(name)

    async def reconcile(self) -> ReconcileReport:
        """Make the rigs follow the plan and the operator's overrides (one catch-up run)."""

        def remember(name: str, status: RigStatus) -> None:
            self.state.statuses[name] = status

        async with self._reconcile_lock:
            report = await reconcile(
                self.sessions,
                self.places,
                self.drivers,
                self.state.statuses,
                self.clock.now(),
                self.reconcile_settings,
                on_status=remember,
                cap=self.site_targets.apply,
            )
        self.state.last_reconcile = report
        await self._acknowledge_targets(self.clock.now())
        if report.disobedient and self.alert_sink is not None:
            for rig in report.disobedient:
                self.alert_sink(
                    f"reconcile:{rig}",
                    "critical",
                    f"rig {rig} does not obey: {report.failed.get(rig, 'no change')}",
                )
        return report

    async def _acknowledge_targets(self, now: datetime) -> None:
        # Acks carry the site's power as last measured: refreshed after every poll and reconcile.
        self.site_targets.remember(self.state.statuses)
        await asyncio.to_thread(
            self.site_targets.acknowledge, self.sessions, self.state.statuses, now
        )
        self.metrics.observe_power_targets(self.sites, self.site_targets.in_force)

    def record_job(
        self, job: str, started_at: datetime, duration_s: float, error: str | None
    ) -> None:
        """Persist one job run (job health, and proof that catch-up ran once)."""
        with self.sessions.begin() as session:
            session.add(
                JobRun(
                    job=job,
                    gateway=self.id,
                    started_at=started_at,
                    duration_s=duration_s,
                    ok=error is None,
                    error=error,
                )
            )

    def housekeeping(self) -> dict[str, int]:
        """Apply telemetry and job-history retention; returns what was removed and created.

        Telemetry on PostgreSQL drops whole day partitions past retention and creates the
        coming days' (controller/partitions.py); on SQLite it deletes the old rows.
        """
        now = self.clock.now()
        telemetry = partitions.apply_retention(
            self.engine,
            TELEMETRY,
            now,
            self.config.database.telemetry_retention_days,
            mode=self.config.database.telemetry_partitioning,
        )
        with self.sessions.begin() as session:
            jobs = session.execute(
                delete(JobRun).where(JobRun.started_at < now - timedelta(days=14))
            )
        if telemetry.dropped or telemetry.created:
            log.info(
                "telemetry partitions",
                extra={"dropped": telemetry.dropped, "created": telemetry.created},
            )
        return {
            "rig_telemetry": telemetry.deleted_rows,
            "rig_telemetry_partitions_dropped": len(telemetry.dropped),
            "rig_telemetry_partitions_created": len(telemetry.created),
            "job_run": jobs.rowcount or 0,  # type: ignore[attr-defined]
        }

    async def close(self) -> None:
        """Release the database (drivers hold no open sockets between calls)."""
        self.engine.dispose()
