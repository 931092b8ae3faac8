"""Prometheus metrics: per-rig and farm series, plan and prices, treasury, job health."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from miners.status import RIG_STATES, RigStatus

if TYPE_CHECKING:
    from controller.site_targets import SitePowerAck

RIG_LABELS = ("site", "rack", "rig", "mac", "model")


@dataclass(frozen=True, slots=True)
class RigLabels:
    """Where a rig sits, for metric labels (the MAC may be unknown until the first read)."""

    site: str
    rack: str
    rig: str
    model: str


class _RigSeries:
    """Per-rig series built from the latest poll at scrape time.

    A gauge child per rig, state and fan would keep ~14 Python objects per rig alive between
    scrapes (tens of MB for a large site); the collector keeps one reference to the last poll
    and builds the families only when Prometheus asks.
    """

    def __init__(self) -> None:
        self.statuses: Mapping[str, RigStatus] = {}
        self.labels: Mapping[str, RigLabels] = {}

    def collect(self) -> Iterator[Metric]:
        """Every per-rig family for the last poll (a rig's unreadable field has no sample)."""
        families = {
            "hashrate": GaugeMetricFamily(
                "farmctl_rig_hashrate_ths", "Rig hashrate, TH/s", labels=RIG_LABELS
            ),
            "power": GaugeMetricFamily(
                "farmctl_rig_power_watts", "Rig power draw, W", labels=RIG_LABELS
            ),
            "efficiency": GaugeMetricFamily(
                "farmctl_rig_efficiency_jth", "Rig efficiency, J/TH", labels=RIG_LABELS
            ),
            "temp": GaugeMetricFamily(
                "farmctl_rig_temperature_celsius", "Hottest board temperature", labels=RIG_LABELS
            ),
            "up": GaugeMetricFamily(
                "farmctl_rig_up", "1 when the rig answered the last poll", labels=RIG_LABELS
            ),
        }
        fans = GaugeMetricFamily("farmctl_rig_fan_rpm", "Fan speed", labels=(*RIG_LABELS, "fan"))
        states = GaugeMetricFamily(
            "farmctl_rig_state", "1 for the rig's current state", labels=(*RIG_LABELS, "state")
        )
        for name, status in self.statuses.items():
            place = self.labels[name]
            key = [place.site, place.rack, place.rig, status.mac or "", status.model or place.model]
            temps = [b.temp_c for b in status.boards if b.temp_c is not None]
            values = {
                "hashrate": status.hashrate_ths,
                "power": status.power_w,
                "efficiency": status.efficiency_jth,
                "temp": max(temps) if temps else None,
                "up": 0.0 if status.state in ("offline", "error") else 1.0,
            }
            for field, value in values.items():
                if value is not None:
                    families[field].add_metric(key, value)
            for index, rpm in enumerate(status.fans_rpm):
                fans.add_metric([*key, str(index)], rpm)
            for state in RIG_STATES:
                states.add_metric([*key, state], 1.0 if status.state == state else 0.0)
        yield from families.values()
        yield fans
        yield states


class FarmMetrics:
    """All of farmctl's series on a private registry (so tests can run several gateways)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rigs = _RigSeries()
        r.register(self.rigs)
        self.farm_hashrate = Gauge(
            "farmctl_site_hashrate_ths", "Site hashrate, TH/s", ("site",), registry=r
        )
        self.farm_power = Gauge(
            "farmctl_site_power_watts", "Site power draw, W", ("site",), registry=r
        )
        self.rigs_by_state = Gauge(
            "farmctl_site_rigs", "Rigs per state", ("site", "state"), registry=r
        )
        self.price = Gauge(
            "farmctl_price_per_mwh", "Electricity price", ("zone", "kind"), registry=r
        )
        self.hashprice = Gauge("farmctl_hashprice_usd_per_th_day", "Hashprice", registry=r)
        self.plan_hashing = Gauge(
            "farmctl_plan_rigs_hashing",
            "Rigs the plan wants hashing this hour",
            ("site",),
            registry=r,
        )
        self.balance = Gauge(
            "farmctl_treasury_balance", "Treasury balance", ("venue", "asset"), registry=r
        )
        self.sold = Counter("farmctl_treasury_sold_btc", "Coins sold", ("venue",), registry=r)
        self.proceeds = Counter(
            "farmctl_treasury_proceeds", "Sale proceeds (quote currency)", ("venue",), registry=r
        )
        self.target_kw = Gauge(
            "farmctl_site_power_target_kw",
            "Site power cap in force now (a central plan's target, on its ramp)",
            ("site",),
            registry=r,
        )
        self.target_achieved_kw = Gauge(
            "farmctl_site_power_target_achieved_kw",
            "Site power measured while a target is in force",
            ("site",),
            registry=r,
        )
        self.job_last_run = Gauge(
            "farmctl_job_last_run_timestamp_seconds",
            "End of the job's last run",
            ("job",),
            registry=r,
        )
        self.job_duration = Gauge(
            "farmctl_job_duration_seconds", "Duration of the job's last run", ("job",), registry=r
        )
        self.job_failures = Counter("farmctl_job_failures", "Failed job runs", ("job",), registry=r)
        self.job_runs = Counter("farmctl_job_runs", "Job runs", ("job",), registry=r)

    def observe_rigs(
        self, statuses: Mapping[str, RigStatus], labels: Mapping[str, RigLabels]
    ) -> None:
        """Take one poll (rig name -> status): per-rig series come from it at scrape time."""
        self.rigs.statuses, self.rigs.labels = dict(statuses), labels
        sites: dict[str, dict[str, float]] = {}
        for name, status in statuses.items():
            site = sites.setdefault(
                labels[name].site, {"ths": 0.0, "w": 0.0} | dict.fromkeys(RIG_STATES, 0.0)
            )
            site["ths"] += status.hashrate_ths or 0.0
            site["w"] += status.power_w or 0.0
            site[status.state] += 1
        for site_id, totals in sites.items():
            self.farm_hashrate.labels(site_id).set(totals["ths"])
            self.farm_power.labels(site_id).set(totals["w"])
            for state in RIG_STATES:
                self.rigs_by_state.labels(site_id, state).set(totals[state])

    def observe_job(self, job: str, ended_at: float, duration_s: float, ok: bool) -> None:
        """Record one job run for the job-health series."""
        self.job_runs.labels(job).inc()
        self.job_last_run.labels(job).set(ended_at)
        self.job_duration.labels(job).set(duration_s)
        if not ok:
            self.job_failures.labels(job).inc()

    def observe_plan(self, hashing_by_site: Iterable[tuple[str, int]]) -> None:
        """Rigs the plan wants hashing in the current hour, per site."""
        for site, count in hashing_by_site:
            self.plan_hashing.labels(site).set(count)

    def observe_power_targets(
        self, sites: Iterable[str], in_force: Mapping[str, SitePowerAck]
    ) -> None:
        """Cap and achieved kW per site with a target in force; series of other sites removed."""
        for site in sites:
            ack = in_force.get(site)
            if ack is None or ack.cap_now_kw is None:
                for gauge in (self.target_kw, self.target_achieved_kw):
                    with contextlib.suppress(KeyError):
                        gauge.remove(site)
                continue
            self.target_kw.labels(site).set(ack.cap_now_kw)
            self.target_achieved_kw.labels(site).set(ack.achieved_kw or 0.0)

    def serve(self, host: str, port: int) -> None:
        """Start the /metrics HTTP endpoint in a background thread."""
        start_http_server(port, addr=host, registry=self.registry)
