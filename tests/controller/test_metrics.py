"""Prometheus metrics: per-rig and per-site series, dropped fields, job health; the Grafana
dashboard only queries series that exist."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import generate_latest

from controller.metrics import FarmMetrics, RigLabels
from miners.status import BoardStatus, RigStatus

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "farmctl-dashboard.json"


def _status(**kw: object) -> RigStatus:
    base = dict(
        mac="02:00:00:00:00:01",
        model="Antminer S19 Pro",
        state="hashing",
        hashrate_ths=104.5,
        power_w=3250.0,
        efficiency_jth=31.1,
        boards=[BoardStatus(0, temp_c=61.0), BoardStatus(1, temp_c=66.5)],
        fans_rpm=[5400, 5520],
        last_seen=datetime.now(UTC),
    )
    base.update(kw)
    return RigStatus(**base)  # type: ignore[arg-type]


def _sample(metrics: FarmMetrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_rig_and_site_series() -> None:
    metrics = FarmMetrics()
    labels = {
        "a": RigLabels("west", "rack-a", "a", "Antminer S19 Pro"),
        "b": RigLabels("west", "rack-b", "b", "Antminer S21"),
    }
    statuses = {
        "a": _status(),
        "b": _status(
            mac="02:00:00:00:00:02",
            model="Antminer S21",
            state="curtailed",
            hashrate_ths=0.0,
            power_w=40.0,
        ),
    }
    metrics.observe_rigs(statuses, labels)
    key = {
        "site": "west",
        "rack": "rack-a",
        "rig": "a",
        "mac": "02:00:00:00:00:01",
        "model": "Antminer S19 Pro",
    }
    assert _sample(metrics, "farmctl_rig_hashrate_ths", key) == 104.5
    assert _sample(metrics, "farmctl_rig_temperature_celsius", key) == 66.5
    assert _sample(metrics, "farmctl_rig_fan_rpm", key | {"fan": "1"}) == 5520
    assert _sample(metrics, "farmctl_rig_state", key | {"state": "hashing"}) == 1
    assert _sample(metrics, "farmctl_rig_state", key | {"state": "curtailed"}) == 0
    assert _sample(metrics, "farmctl_site_hashrate_ths", {"site": "west"}) == 104.5
    assert _sample(metrics, "farmctl_site_power_watts", {"site": "west"}) == 3290.0
    assert _sample(metrics, "farmctl_site_rigs", {"site": "west", "state": "curtailed"}) == 1
    # The rig goes offline: its hashrate series disappears instead of showing the old value.
    metrics.observe_rigs(
        {
            "a": _status(
                state="offline",
                hashrate_ths=None,
                power_w=None,
                efficiency_jth=None,
                boards=[],
                fans_rpm=[],
            )
        },
        labels,
    )
    assert _sample(metrics, "farmctl_rig_hashrate_ths", key) is None
    assert _sample(metrics, "farmctl_rig_up", key) == 0


def test_job_health() -> None:
    metrics = FarmMetrics()
    metrics.observe_job("poll", 1700000000.0, 0.8, True)
    metrics.observe_job("poll", 1700000030.0, 1.2, False)
    assert _sample(metrics, "farmctl_job_runs_total", {"job": "poll"}) == 2
    assert _sample(metrics, "farmctl_job_failures_total", {"job": "poll"}) == 1
    assert (
        _sample(metrics, "farmctl_job_last_run_timestamp_seconds", {"job": "poll"}) == 1700000030.0
    )
    assert _sample(metrics, "farmctl_job_duration_seconds", {"job": "poll"}) == 1.2


def test_dashboard_queries_only_exported_series() -> None:
    exported = set(
        re.findall(r"^# TYPE (\w+)", generate_latest(FarmMetrics().registry).decode(), re.M)
    )
    # Counters are exposed with a _total suffix.
    names = exported | {f"{n}_total" for n in exported}
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        m
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for m in re.findall(r"farmctl_\w+", target["expr"])
    }
    assert used and used <= names
    assert {
        "farmctl_rig_hashrate_ths",
        "farmctl_treasury_balance",
        "farmctl_job_failures_total",
    } <= used
