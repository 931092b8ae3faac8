"""The daemon: APScheduler jobs on a persistent store, guarded jobs, one catch-up run after a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import func, select

from controller import jobs
from controller.clock import AcceleratedClock
from controller.config import parse_config
from controller.daemon import serve
from controller.gateway import Gateway, gateway_id
from controller.tables import JobRun
from miners.sim.simulator import Simulator


def _farm(tmp_path: Path, sim: Simulator) -> dict:  # type: ignore[type-arg]
    return {
        "farm": {"name": "daemon-test", "data_dir": str(tmp_path / "var")},
        "sites": [{"id": "west"}],
        "rigs": [
            {
                "name": f"rig-{i}",
                "site": "west",
                "address": f"127.0.0.1:{r.port}",
                "family": r.family,
                "http_port": r.http_port,
            }
            for i, r in enumerate(sim.rigs)
        ],
        "scheduler": {"poll_interval_s": 30, "reconcile_interval_s": 60, "misfire_grace_s": 5},
        "metrics": {"enabled": False},
    }


async def _run_for(
    tmp_path: Path, sim: Simulator, seconds: float, extra: dict | None = None
) -> Gateway:  # type: ignore[type-arg]
    config = parse_config(_farm(tmp_path, sim) | (extra or {}), tmp_path / "farm.toml")
    # 30x: a 30 s poll interval fires every second of real time.
    clock = AcceleratedClock(datetime.now(UTC), speed=30)
    stop = asyncio.Event()
    gateway = Gateway(config, base_dir=tmp_path, clock=clock)

    async def stop_later(_: Gateway) -> None:
        asyncio.get_running_loop().call_later(seconds, stop.set)

    await serve(
        config, base_dir=tmp_path, clock=clock, stop=stop, gateway=gateway, on_started=stop_later
    )
    return gateway


def _runs(gateway: Gateway, job: str) -> int:
    engine = gateway.engine
    from controller.storage import make_engine, session_factory

    engine = make_engine(gateway.database_url)
    with session_factory(engine)() as session:
        count = session.scalar(
            select(func.count()).select_from(JobRun).where(JobRun.job == job, JobRun.ok.is_(True))
        )
    engine.dispose()
    return int(count or 0)


async def test_jobs_run_on_schedule_and_persist_in_the_gateway_store(tmp_path: Path) -> None:
    async with Simulator({"antminer": 2}) as sim:
        gateway = await _run_for(tmp_path, sim, 3.5)
    assert _runs(gateway, "poll") >= 3  # at start, then every real second
    assert 2 <= _runs(gateway, "reconcile") <= 3  # at start, then every 2 real seconds
    store = SQLAlchemyJobStore(
        url=gateway.database_url,
        tablename=f"apscheduler_jobs_{gateway_id(gateway.config, gateway.sites)}".lower(),
    )
    store.start(None, "default")  # type: ignore[arg-type]
    assert {job.id for job in store.get_all_jobs()} == {"poll", "reconcile", "housekeeping"}
    assert all(job.func_ref.startswith("controller.jobs:") for job in store.get_all_jobs())
    store.shutdown()
    # Each run names its gateway: several gateways share one database (issue 8).
    from controller.storage import make_engine, session_factory

    engine = make_engine(gateway.database_url)
    with session_factory(engine)() as session:
        ran_by = set(session.scalars(select(JobRun.gateway).distinct()).all())
    engine.dispose()
    assert gateway.id == "daemon_test_west" and ran_by == {"daemon_test_west"}


async def test_restart_runs_one_catch_up_reconcile(tmp_path: Path) -> None:
    async with Simulator({"antminer": 1}) as sim:
        first = await _run_for(tmp_path, sim, 0.5)
        before = _runs(first, "reconcile")
        # Down for a while: many reconcile intervals are missed.
        await asyncio.sleep(1.5)
        second = await _run_for(tmp_path, sim, 0.5)
    assert _runs(second, "reconcile") - before == 1


async def test_a_failing_job_is_recorded_and_does_not_stop_the_others(tmp_path: Path) -> None:
    calls = 0

    async def broken(_: Gateway) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("price feed answered garbage")

    jobs.register_job_body("prices", broken)
    try:
        async with Simulator({"antminer": 1}) as sim:
            gateway = await _run_for(
                tmp_path,
                sim,
                2.5,
                {"scheduler": {"poll_interval_s": 30, "price_ingest_interval_s": 60}},
            )
    finally:
        jobs.unregister_job_body("prices")
    assert calls >= 2
    engine_runs = _runs(gateway, "poll")
    assert engine_runs >= 2
    from controller.storage import make_engine, session_factory

    engine = make_engine(gateway.database_url)
    with session_factory(engine)() as session:
        errors = session.scalars(select(JobRun.error).where(JobRun.job == "prices")).all()
    engine.dispose()
    assert errors and all(e == "ValueError: price feed answered garbage" for e in errors)
