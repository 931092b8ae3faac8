"""SIGKILL the daemon at random moments (seeded) and start it again on the same farm timeline.

The daemon is `farmctl run` itself (gateway, MQTT to a real mosquitto, price store, planner,
treasury on the paper venue) as its own process, against simulated rigs that outlive it, on a
farm clock 1440x faster than real time (hidden `--clock-*` options). The price store holds the
recorded ERCOT prices around the day (what the `prices` job would have fetched; its fetch from
the ERCOT API fails here, on purpose: no network). After every kill and at the end the database and the paper venue's own state
file must show: telemetry that only grew, in whole poll batches, with no gap inside a run; no
order placed twice; one catch-up reconcile per start; one plan row per rig and hour with no
hole; a ledger that explains the venue's balances to the last satoshi.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from controller.demo import DEMO_DAY
from controller.mqtt.tables import RigTelemetry
from controller.tables import JobRun, PlanSlot
from tests.e2e.farm import ZONE
from tests.e2e.support import (
    REPO,
    SimThread,
    e2e_config,
    ledger_vs_paper,
    seed_opening_coins,
    seed_recorded_prices,
    toml_text,
)
from tests.support.mosquitto import MosquittoBroker

SPEED = 1440.0
SEED = 20261123


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the daemon log after {timeout_s} s")


@pytest.mark.timeout(240)
def test_sigkill_twice_loses_nothing_and_duplicates_nothing(
    data_dir: Path, tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """Two kills at seeded moments in the first seconds of a run (the fast suite)."""
    kill_and_check(data_dir, tmp_path, mosquitto, kills=2, alive_s=(1.0, 6.0), last_s=6.0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_loses_nothing_and_duplicates_nothing(
    data_dir: Path, tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """Six kills anywhere in runs of up to 20 s (replans, ticks, reports under way)."""
    kill_and_check(data_dir, tmp_path, mosquitto, kills=6, alive_s=(1.0, 20.0), last_s=20.0)


def kill_and_check(
    data_dir: Path,
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    *,
    kills: int,
    alive_s: tuple[float, float],
    last_s: float,
) -> None:
    """Start, SIGKILL after a seeded random time, restart, `kills` times; then check it all."""
    if not (data_dir / "electricity" / "ercot").is_dir():
        pytest.skip("shared ERCOT prices absent")
    rnd = random.Random(SEED)
    fleet = SimThread(8)
    try:
        # A decision every tick, and a fixed band that puts August 2025's ~114k USD near
        # pmax: the strategy sells from the first tick of the first run, so the kills land
        # among many small orders (a rolling band only started selling at 18:30 farm time,
        # after both kills, when startup was quick).
        config = e2e_config(
            fleet.sim,
            tmp_path,
            {
                "decision_interval_minutes": 5,
                "band_method": "fixed",
                "pmin": 60_000.0,
                "pmax": 120_000.0,
            },
            max_order_btc=0.002,
            max_sold_per_day_btc=0.03,
        )
        raw = config.model_dump(mode="json", exclude_none=True)
        raw["mqtt"] = raw["mqtt"] | {"enabled": True, "host": "127.0.0.1", "port": mosquitto.port}
        raw["electricity"] = raw["electricity"] | {"api_url": "http://127.0.0.1:9/unreachable"}
        raw["planner"] = raw["planner"] | {"hashprice_usd_per_th_day": 0.049}
        config_path = tmp_path / "farm.toml"
        config_path.write_text(toml_text(raw))
        start, epoch = DEMO_DAY + timedelta(hours=6), time.time()
        database_url = config.database_url(tmp_path)
        assert seed_recorded_prices(database_url, data_dir, ZONE, start) > 4000
        # A month of twenty such fleets' coins: many small orders, so kills land around them.
        nominal = sum(r.model.nominal_ths for r in fleet.sim.rigs)
        coins = Decimal(f"{20 * nominal * 30 * 1e12 / 8.0e20 * 450:.8f}")
        seed_opening_coins(database_url, tmp_path / "paper-paper.json", coins, start)
        env = os.environ | {"PYTHONPATH": str(REPO)}
        launches: list[datetime] = []
        telemetry_after_kill: list[int] = []
        engine = create_engine(config.database_url(tmp_path))

        def telemetry_rows() -> int:
            with engine.connect() as conn:
                return int(conn.scalar(select(func.count()).select_from(RigTelemetry)) or 0)

        for run in range(kills + 1):
            log = tmp_path / f"daemon-{run}.log"
            launches.append(start + timedelta(seconds=(time.time() - epoch) * SPEED))
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "farmctl"),
                        "run",
                        "--config",
                        str(config_path),
                        "--clock-start",
                        start.isoformat(),
                        "--clock-speed",
                        str(SPEED),
                        "--clock-epoch",
                        repr(epoch),
                    ],
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                _wait_for(log, "gateway running", proc, timeout_s=90)
                if run < kills:
                    time.sleep(rnd.uniform(*alive_s))
                    before = telemetry_rows()
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    after = telemetry_rows()
                    # Rows committed before the kill survive it.
                    assert after >= before
                    telemetry_after_kill.append(after)
                else:
                    time.sleep(last_s)
                    proc.send_signal(signal.SIGTERM)
                    assert proc.wait(60) == 0, log.read_text()[-3000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        final_rows = telemetry_rows()
        engine.dispose()
    finally:
        fleet.close()

    # -- telemetry: only grew, whole batches, no silent gap inside one run -------------------
    assert telemetry_after_kill == sorted(telemetry_after_kill)
    assert final_rows > telemetry_after_kill[-1]
    engine = create_engine(config.database_url(tmp_path))
    with engine.connect() as conn:
        batches = conn.execute(
            select(RigTelemetry.time, func.count()).group_by(RigTelemetry.time)
        ).all()
        polls_ok = conn.scalar(
            select(func.count()).select_from(JobRun).where(JobRun.job == "poll", JobRun.ok)
        )
        reconciles = [
            t.replace(tzinfo=UTC) if t.tzinfo is None else t
            for t in conn.scalars(
                select(JobRun.started_at).where(JobRun.job == "reconcile").order_by(JobRun.id)
            )
        ]
        slots = conn.execute(select(PlanSlot.rig, PlanSlot.hour_start, PlanSlot.plan_id)).all()
    engine.dispose()
    rigs = len(config.rigs)
    assert all(n == rigs for _, n in batches), "a poll batch was stored in part"
    # Every poll recorded as done has its batch (a kill may add a batch without its record).
    assert len(batches) >= (polls_ok or 0) > 0
    times = sorted(t.replace(tzinfo=UTC) if t.tzinfo is None else t for t, _ in batches)
    bounds = [*launches[1:], datetime.max.replace(tzinfo=UTC)]
    poll_every = timedelta(seconds=SPEED * 1.0)  # one real second, in farm time
    for lo, hi in zip(launches, bounds, strict=True):
        inside = [t for t in times if lo <= t < hi]
        assert inside, f"no telemetry in the run started at {lo}"
        gaps = [b - a for a, b in itertools.pairwise(inside)]
        # Polls run every real second; a loaded machine may delay one, never drop a batch.
        assert all(g < 4 * poll_every for g in gaps), max(gaps)

    # -- one catch-up reconcile per start ----------------------------------------------------
    for lo, hi in zip(launches, bounds, strict=True):
        runs = [t for t in reconciles if lo <= t < hi]
        assert runs, f"no reconcile in the run started at {lo}"
        first = runs[0]
        # The next scheduled run is one real second (1440 farm s) later: anything sooner
        # would be a second catch-up run.
        assert sum(1 for t in runs if t < first + timedelta(seconds=SPEED / 2)) == 1

    # -- the plan: one row per rig and hour, no hole in the planned horizon ------------------
    # (Hours the daemon was down for longer than a plan reached have no row: that is history,
    # not a hole. Every stored plan's own hours, and the newest plan's horizon, are whole.)
    per_plan: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    seen = set()
    for rig, hour, plan_id in slots:
        assert (rig, hour) not in seen
        seen.add((rig, hour))
        per_plan[(rig, plan_id)].append(hour)
    assert per_plan, "no plan was stored"
    newest = max(plan_id for _, plan_id in per_plan)
    for (rig, plan_id), hours in per_plan.items():
        hours.sort()
        span = int((hours[-1] - hours[0]).total_seconds() // 3600) + 1
        assert span == len(hours), f"{rig}: plan {plan_id} has holes"
    for rig in {r for r, _ in per_plan}:
        first = min(per_plan.get((rig, newest), [datetime.max]))
        ahead = sorted(h for (r, _), hs in per_plan.items() if r == rig for h in hs if h >= first)
        assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(ahead)), rig

    # -- treasury: no order twice, ledger == venue -------------------------------------------
    view = ledger_vs_paper(config.database_url(tmp_path), tmp_path / "paper-paper.json")
    assert view["venue_btc"] == view["ledger_btc"]
    assert view["venue_usd"] == view["ledger_usd"]
    assert len(view["venue_order_ids"]) == len(set(view["venue_order_ids"]))
    for cloid, filled in view["venue_orders"].items():
        assert cloid in view["ledger_orders"], f"venue order {cloid} unknown to the ledger"
        assert view["ledger_orders"][cloid][0] == filled
    assert not any("duplicate" in (s or "") for _, s in view["ledger_orders"].values())
    assert sum(1 for filled in view["venue_orders"].values() if filled > 0) >= 2, view
