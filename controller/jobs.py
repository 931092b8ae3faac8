"""The daemon's scheduled jobs: module-level functions, as a persistent APScheduler store needs.

A job stored in the database is a reference like `controller.jobs:poll_rigs`; the function finds
the running gateway through `bind()`, so stored jobs stay valid across restarts and upgrades.
Every job runs under `_guarded`: its failure is logged, counted and recorded, never raised into
the scheduler, and a time limit keeps a hung job from holding its slot forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from controller.gateway import Gateway

log = logging.getLogger(__name__)

_gateway: Gateway | None = None
_extra_jobs: dict[str, Callable[[Gateway], Awaitable[Any]]] = {}
_running: set[asyncio.Task[Any]] = set()


def bind(gateway: Gateway | None) -> None:
    """Make `gateway` the one the job functions act on (None unbinds)."""
    global _gateway
    _gateway = gateway


def register_job_body(name: str, body: Callable[[Gateway], Awaitable[Any]]) -> None:
    """Attach the body of a job that lives outside the gateway (prices, plan, treasury, reports)."""
    _extra_jobs[name] = body


async def drain(grace_s: float) -> int:
    """Wait up to `grace_s` for running jobs to finish, then cancel the rest; returns how many
    had to be cancelled."""
    pending = set(_running)
    if not pending:
        return 0
    _done, still = await asyncio.wait(pending, timeout=grace_s)
    for task in still:
        task.cancel()
    if still:
        await asyncio.wait(still, timeout=5)
    return len(still)


def unregister_job_body(name: str) -> None:
    """Remove a registered job body (tests, and features switched off at run time)."""
    _extra_jobs.pop(name, None)


def registered() -> set[str]:
    """Names of the job bodies registered so far."""
    return set(_extra_jobs)


async def _guarded(name: str, body: Callable[[Gateway], Awaitable[Any]], limit_s: float) -> bool:
    gateway = _gateway
    if gateway is None:
        # A run the scheduler had already queued when the daemon shut down: nothing to act on.
        log.info("job skipped: gateway stopped", extra={"job": name})
        return False
    started_at = gateway.clock.now()
    started = time.perf_counter()
    error: str | None = None
    task = asyncio.current_task()
    if task is not None:
        _running.add(task)
    try:
        await asyncio.wait_for(body(gateway), limit_s)
    except TimeoutError:
        error = f"timed out after {limit_s:.0f} s"
    except asyncio.CancelledError:
        # Shutdown outlived the grace period: the run ends here, recorded as such.
        error = "cancelled at shutdown"
        log.warning("job cancelled at shutdown", extra={"job": name})
    except Exception as exc:  # a failing job must never take the scheduler down
        error = f"{type(exc).__name__}: {exc}"
        log.exception("job failed", extra={"job": name})
    finally:
        if task is not None:
            _running.discard(task)
    duration = time.perf_counter() - started
    gateway.metrics.observe_job(name, time.time(), duration, error is None)
    try:
        await asyncio.to_thread(gateway.record_job, name, started_at, duration, error)
    except Exception:
        log.exception("could not record job run", extra={"job": name})
    if error:
        log.warning("job did not finish", extra={"job": name, "error": error})
    return error is None


async def poll_rigs() -> None:
    """Poll every rig (default every 30 s)."""
    await _guarded("poll", lambda g: g.poll(), limit_s=60)


async def reconcile_rigs() -> None:
    """Make rigs follow the plan and overrides (default every minute)."""
    await _guarded("reconcile", lambda g: g.reconcile(), limit_s=300)


async def housekeeping() -> None:
    """Apply retention to telemetry and job history (daily)."""
    await _guarded("housekeeping", lambda g: asyncio.to_thread(g.housekeeping), limit_s=600)


async def run_registered(name: str) -> None:
    """Run a job whose body was registered with `register_job_body` (prices, plan, treasury...)."""
    body = _extra_jobs.get(name)
    if body is None:
        log.error("job has no registered body", extra={"job": name})
        return
    await _guarded(name, body, limit_s=600)
