"""Prometheus metrics: per-rig and farm series, plan and prices, treasury, job health."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from miners.status import RIG_STATES, RigStatus

RIG_LABELS = ("site", "rack", "rig", "mac", "model")


@dataclass(frozen=True, slots=True)
class RigLabels:
    """Where a rig sits, for metric labels (the MAC may be unknown until the first read)."""

    site: str
    rack: str
    rig: str
    model: str


class FarmMetrics:
    """All of farmctl's series on a private registry (so tests can run several gateways)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.hashrate = Gauge(
            "farmctl_rig_hashrate_ths", "Rig hashrate, TH/s", RIG_LABELS, registry=r
        )
        self.power = Gauge("farmctl_rig_power_watts", "Rig power draw, W", RIG_LABELS, registry=r)
        self.efficiency = Gauge(
            "farmctl_rig_efficiency_jth", "Rig efficiency, J/TH", RIG_LABELS, registry=r
        )
        self.temp = Gauge(
            "farmctl_rig_temperature_celsius", "Hottest board temperature", RIG_LABELS, registry=r
        )
        self.fan = Gauge("farmctl_rig_fan_rpm", "Fan speed", (*RIG_LABELS, "fan"), registry=r)
        self.state = Gauge(
            "farmctl_rig_state", "1 for the rig's current state", (*RIG_LABELS, "state"), registry=r
        )
        self.up = Gauge(
            "farmctl_rig_up", "1 when the rig answered the last poll", RIG_LABELS, registry=r
        )
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
        self._known: dict[str, tuple[str, ...]] = {}

    def observe_rigs(
        self, statuses: Mapping[str, RigStatus], labels: Mapping[str, RigLabels]
    ) -> None:
        """Update every per-rig and per-site series from one poll (rig name -> status)."""
        sites: dict[str, dict[str, float]] = {}
        for name, status in statuses.items():
            place = labels[name]
            key = (place.site, place.rack, place.rig, status.mac or "", status.model or place.model)
            previous = self._known.get(name)
            if previous is not None and previous != key:
                self._drop(previous)
            self._known[name] = key
            live = status.state not in ("offline", "error")
            self.up.labels(*key).set(1 if live else 0)
            for state in RIG_STATES:
                self.state.labels(*key, state).set(1 if status.state == state else 0)
            _set(self.hashrate, key, status.hashrate_ths)
            _set(self.power, key, status.power_w)
            _set(self.efficiency, key, status.efficiency_jth)
            temps = [b.temp_c for b in status.boards if b.temp_c is not None]
            _set(self.temp, key, max(temps) if temps else None)
            for index, rpm in enumerate(status.fans_rpm):
                self.fan.labels(*key, str(index)).set(rpm)
            site = sites.setdefault(
                place.site, {"ths": 0.0, "w": 0.0} | dict.fromkeys(RIG_STATES, 0.0)
            )
            site["ths"] += status.hashrate_ths or 0.0
            site["w"] += status.power_w or 0.0
            site[status.state] += 1
        for site_id, totals in sites.items():
            self.farm_hashrate.labels(site_id).set(totals["ths"])
            self.farm_power.labels(site_id).set(totals["w"])
            for state in RIG_STATES:
                self.rigs_by_state.labels(site_id, state).set(totals[state])

    def _drop(self, key: tuple[str, ...]) -> None:
        for gauge in (self.hashrate, self.power, self.efficiency, self.temp, self.up):
            _remove(gauge, key)
        for state in RIG_STATES:
            _remove(self.state, (*key, state))

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

    def serve(self, host: str, port: int) -> None:
        """Start the /metrics HTTP endpoint in a background thread."""
        start_http_server(port, addr=host, registry=self.registry)


def _set(gauge: Gauge, key: tuple[str, ...], value: float | None) -> None:
    # An unreadable field must not keep showing its last value: drop the series instead.
    if value is None:
        _remove(gauge, key)
    else:
        gauge.labels(*key).set(value)


def _remove(gauge: Gauge, key: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*key)
