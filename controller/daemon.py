"""`farmctl run`: one asyncio loop, APScheduler's AsyncIOScheduler, a persistent job store.

Choices (see docs/operations.md):
- coalesce=True: after downtime a job runs once, not once per missed interval.
- max_instances=1: a slow run is never overlapped by the next one of the same job.
- misfire_grace_time: a run later than this is dropped in favour of the next one.
- poll and reconcile are (re)scheduled to run at start: the one catch-up run after a restart.
- one job-store table per gateway (`apscheduler_jobs_<gateway>`): APScheduler 3 must never
  share a store between schedulers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from controller import jobs
from controller.clock import Clock
from controller.config import FarmConfig
from controller.gateway import Gateway

log = logging.getLogger(__name__)


def build_scheduler(gateway: Gateway) -> AsyncIOScheduler:
    """The scheduler with the gateway's own persistent job store and our job defaults."""
    table = f"apscheduler_jobs_{gateway.id}".lower()
    return AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=gateway.engine, tablename=table)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": gateway.config.scheduler.misfire_grace_s,
        },
        timezone="UTC",
    )


def schedule_jobs(scheduler: AsyncIOScheduler, gateway: Gateway, clock: Clock) -> list[str]:
    """Add (or replace) every job; returns the ids scheduled."""
    cfg = gateway.config.scheduler
    # The scheduler runs on real time; only the jobs' business logic uses the farm clock.
    now = datetime.now(UTC)

    def every(farm_seconds: float) -> float:
        return max(1.0, clock.real_seconds(farm_seconds))

    plan: list[tuple[str, Callable[..., Awaitable[None]], float, tuple[Any, ...], bool]] = [
        ("poll", jobs.poll_rigs, cfg.poll_interval_s, (), True),
        ("reconcile", jobs.reconcile_rigs, cfg.reconcile_interval_s, (), True),
        ("housekeeping", jobs.housekeeping, 86_400, (), False),
    ]
    optional: dict[str, float] = {
        "prices": cfg.price_ingest_interval_s,
        "refit": 86_400,
        "replan": cfg.replan_interval_s,
        "treasury": cfg.treasury_interval_s,
        "report": 86_400,
    }
    for name, seconds in optional.items():
        if name in jobs.registered():
            plan.append((name, jobs.run_registered, seconds, (name,), name == "prices"))
    scheduled = []
    for job_id, func, seconds, args, run_now in plan:
        scheduler.add_job(
            func,
            "interval",
            seconds=every(seconds),
            args=args,
            id=job_id,
            name=job_id,
            replace_existing=True,
            # Jobs that do not run at start wait one interval, at most a farm minute: the
            # first replan then sees the first poll's readings.
            next_run_time=now
            if run_now
            else now + timedelta(seconds=min(every(seconds), every(60))),
        )
        scheduled.append(job_id)
    return scheduled


async def serve(
    config: FarmConfig,
    *,
    base_dir: Path,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    gateway: Gateway | None = None,
    on_started: Callable[[Gateway], Awaitable[None]] | None = None,
    shutdown_grace_s: float = 30.0,
) -> None:
    """Run the gateway until `stop` is set or SIGTERM/SIGINT arrives; shut down cleanly."""
    clock = clock or Clock()
    stop = stop or asyncio.Event()
    gateway = gateway or Gateway(config, base_dir=base_dir, clock=clock)
    await gateway.start()
    jobs.bind(gateway)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if config.metrics.enabled:
        try:
            gateway.metrics.serve(config.metrics.host, config.metrics.port)
        except OSError as exc:
            log.error(
                "metrics endpoint not started",
                extra={"port": config.metrics.port, "error": str(exc)},
            )
    scheduler = build_scheduler(gateway)
    scheduler.start()
    scheduled = schedule_jobs(scheduler, gateway, clock)
    log.info("gateway running", extra={"jobs": ",".join(scheduled), "rigs": len(gateway.rigs)})
    try:
        if on_started is not None:
            await on_started(gateway)
        await stop.wait()
    finally:
        log.info("gateway stopping")
        scheduler.shutdown(wait=False)
        # Running jobs finish their step (a reconcile batch, an order) before the database closes.
        cancelled = await jobs.drain(grace_s=shutdown_grace_s)
        if cancelled:
            log.warning("jobs cancelled at shutdown", extra={"count": cancelled})
        jobs.bind(None)
        await gateway.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
