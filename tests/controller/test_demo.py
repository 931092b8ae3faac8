"""`farmctl demo` end to end on a short accelerated run: plans made, rigs curtailed, files written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from controller.broker import mosquitto_binary
from controller.config import load_config
from controller.demo import DemoOptions, demo_fleet, run_demo

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "farm.example.toml"


def test_demo_fleet_has_every_family() -> None:
    fleet = demo_fleet(24)
    assert sum(fleet.values()) == 24
    assert set(fleet) == {
        "antminer",
        "luxos",
        "whatsminer",
        "avalon",
        "braiins",
        "cgminer",
        "bitaxe",
    }
    assert min(demo_fleet(7).values()) == 1


async def test_short_demo_run(tmp_path: Path) -> None:
    options = DemoOptions(speed=3600, hours=3, rigs=8, out=tmp_path, live=False)
    result = await run_demo(load_config(EXAMPLE), options)
    assert result.plans >= 2  # the first plan, then replans (one per farm hour, load permitting)
    mqtt_rigs = 3 if mosquitto_binary() else 0
    assert sum(result.rigs_by_state.values()) == 8 + mqtt_rigs
    assert (result.farm_end - result.farm_start).total_seconds() >= 3 * 3600
    with result.files["plan_csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert {r["desired"] for r in rows} <= {"hashing", "curtailed"}
    planned = {r["rig"] for r in rows}
    fleet = {f"{family}-{i:02d}" for family in demo_fleet(8) for i in range(8)}
    assert planned and planned <= fleet | {f"mqtt-rig-{i}" for i in range(1, mqtt_rigs + 1)}
    # Every curtail the reconcile job sent matched a curtailed slot of the plan.
    if result.curtail_actions:
        assert any(r["desired"] == "curtailed" for r in rows)
    summary = json.loads(result.files["summary"].read_text())
    assert summary["plans"] == result.plans
    assert result.files["plan_plot"].stat().st_size > 10_000
