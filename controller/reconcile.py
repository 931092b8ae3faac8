"""Reconcile: make every rig's actual state match the plan (or an operator override).

One run looks only at *now*: after downtime a single run catches up, never a replay of every
missed minute. Actions go out in staggered batches, each verified by reading the rig back;
a rig that keeps disobeying is marked and alerted, not hammered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from controller.clock import as_utc, hour_floor
from controller.tables import Override, PlanSlot, RigControl
from miners.driver import Capability, RigDriver, RigError, RigUnsupportedAction
from miners.remediation import staggered
from miners.status import RigStatus

log = logging.getLogger(__name__)

Desired = Literal["hashing", "curtailed"]
_RANK = {"rig": 0, "rack": 1, "site": 2}
# Caps the desired states in place after override > plan > default (site power targets,
# controller/site_targets.py): (session to commit, wanted, statuses, rig_control rows, now).
CapHook = Callable[
    [
        Session,
        dict[str, tuple[Desired, str]],
        Mapping[str, RigStatus],
        Mapping[str, RigControl],
        datetime,
    ],
    None,
]


@dataclass(frozen=True, slots=True)
class RigPlace:
    """Where a configured rig sits, for matching rack- and site-wide overrides."""

    name: str
    site: str
    rack: str | None


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """Limits of one reconcile run."""

    batch_size: int = 20
    batch_delay_s: float = 2.0
    max_attempts: int = 3
    retry_after: timedelta = timedelta(minutes=2)
    action_timeout_s: float = 30.0


@dataclass(slots=True)
class ReconcileReport:
    """What one run did: actions sent, rigs that obeyed, failed, or were skipped."""

    at: datetime
    curtailed: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    disobedient: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    skipped_offline: list[str] = field(default_factory=list)
    in_step: int = 0


def desired_states(
    session: Session, rigs: Sequence[RigPlace], now: datetime
) -> dict[str, tuple[Desired, str]]:
    """Each rig's desired state now and why ("override:<id>", "plan:<id>" or "default")."""
    hour = hour_floor(now)
    slots = {
        row.rig: row
        for row in session.scalars(
            select(PlanSlot).where(
                PlanSlot.hour_start == hour, PlanSlot.rig.in_([r.name for r in rigs])
            )
        )
    }
    overrides = list(
        session.scalars(
            select(Override).where(
                Override.starts_at <= now,
                Override.ends_at > now,
                or_(Override.cancelled.is_(False), Override.cancelled.is_(None)),
            )
        )
    )
    result: dict[str, tuple[Desired, str]] = {}
    for rig in rigs:
        matching = [
            o
            for o in overrides
            if (o.target_kind == "rig" and o.target == rig.name)
            or (o.target_kind == "rack" and rig.rack is not None and o.target == rig.rack)
            or (o.target_kind == "site" and o.target == rig.site)
        ]
        if matching:
            # The most specific target wins; among equals, the newest order.
            best = min(matching, key=lambda o: (_RANK[o.target_kind], -o.created_at.timestamp()))
            result[rig.name] = (_as_desired(best.desired), f"override:{best.id}")
        elif rig.name in slots:
            slot = slots[rig.name]
            result[rig.name] = (_as_desired(slot.desired), f"plan:{slot.plan_id}")
        else:
            result[rig.name] = ("hashing", "default")
    return result


def _capped(
    factory: sessionmaker[Session],
    cap: CapHook,
    wanted: dict[str, tuple[Desired, str]],
    statuses: Mapping[str, RigStatus],
    controls: Mapping[str, RigControl],
    now: datetime,
) -> None:
    with factory.begin() as session:
        cap(session, wanted, statuses, controls, now)


def _as_desired(value: str) -> Desired:
    if value not in ("hashing", "curtailed"):
        raise ValueError(f"desired state {value!r} is neither hashing nor curtailed")
    return "hashing" if value == "hashing" else "curtailed"


def _needed(desired: Desired, actual: RigStatus | None) -> Literal["curtail", "resume"] | None:
    if actual is None or actual.state in ("offline", "error"):
        return None
    if desired == "curtailed" and actual.state in ("hashing", "idle"):
        return "curtail"
    if desired == "hashing" and actual.state in ("curtailed", "idle"):
        return "resume"
    return None


async def reconcile(
    factory: sessionmaker[Session],
    rigs: Sequence[RigPlace],
    drivers: Mapping[str, RigDriver],
    statuses: Mapping[str, RigStatus],
    now: datetime,
    settings: ReconcileSettings,
    on_status: Callable[[str, RigStatus], None] | None = None,
    cap: CapHook | None = None,
) -> ReconcileReport:
    """Compare desired and actual state of every rig and act on the differences, staggered.

    `cap` may curtail more rigs than the plan and overrides do (a site power target).
    """
    report = ReconcileReport(at=now)
    with factory() as session:
        wanted = await asyncio.to_thread(desired_states, session, rigs, now)
        controls = _Controls({c.rig: c for c in session.scalars(select(RigControl))})
    if cap is not None:
        await asyncio.to_thread(_capped, factory, cap, wanted, statuses, controls, now)
    todo: list[tuple[str, Literal["curtail", "resume"], Desired]] = []
    for rig in rigs:
        desired, _why = wanted[rig.name]
        status = statuses.get(rig.name)
        control = controls.get(rig.name)
        action = _needed(desired, status)
        if status is None or status.state in ("offline", "error"):
            report.skipped_offline.append(rig.name)
            continue
        if action is None:
            report.in_step += 1
            _record(controls, rig.name, desired, "ok", now, reset=True)
            continue
        if control is not None and control.desired == desired:
            if control.status in ("disobedient", "unsupported"):
                (
                    report.disobedient if control.status == "disobedient" else report.unsupported
                ).append(rig.name)
                continue
            last = control.last_attempt_at
            if last is not None and now - as_utc(last) < settings.retry_after:
                continue  # the last attempt is recent: give the rig time to ramp
        todo.append((rig.name, action, desired))

    results = await staggered(
        [partial(_act, drivers[name], name, action, settings) for name, action, _ in todo],
        batch_size=settings.batch_size,
        delay_s=settings.batch_delay_s,
    )
    for (name, action, desired), (error, status) in zip(todo, results, strict=True):
        if status is not None and on_status is not None:
            on_status(name, status)
        if error is None:
            (report.curtailed if action == "curtail" else report.resumed).append(name)
            _record(controls, name, desired, "ok", now, reset=True)
            continue
        if error.startswith("unsupported:"):
            report.unsupported.append(name)
            _record(controls, name, desired, "unsupported", now, error=error)
            continue
        control = _record(controls, name, desired, "pending", now, error=error)
        report.failed[name] = error
        if control.attempts >= settings.max_attempts:
            control.status = "disobedient"
            report.disobedient.append(name)
    with factory.begin() as session:
        for name in _touched(controls):
            session.merge(controls[name])
    if report.curtailed or report.resumed or report.failed:
        log.info(
            "reconcile acted",
            extra={
                "curtailed": len(report.curtailed),
                "resumed": len(report.resumed),
                "failed": len(report.failed),
                "disobedient": len(report.disobedient),
            },
        )
    return report


class _Controls(dict[str, RigControl]):
    """The rig_control rows of one run, remembering which ones this run changed."""

    def __init__(self, rows: dict[str, RigControl]) -> None:
        super().__init__(rows)
        self.touched: set[str] = set()


def _touched(controls: dict[str, RigControl]) -> set[str]:
    assert isinstance(controls, _Controls)
    return controls.touched


def _record(
    controls: dict[str, RigControl],
    rig: str,
    desired: Desired,
    status: str,
    now: datetime,
    *,
    reset: bool = False,
    error: str | None = None,
) -> RigControl:
    control = controls.get(rig)
    if control is None:
        control = RigControl(rig=rig, desired=desired, status=status, attempts=0, updated_at=now)
        controls[rig] = control
    elif reset and control.desired == desired and control.status == status and not control.attempts:
        return control  # nothing changed: no write (thousands of in-step rigs every minute)
    _touched(controls).add(rig)
    if control.desired != desired:
        control.attempts = 0
    control.desired, control.status, control.updated_at = desired, status, now
    if reset:
        control.attempts, control.last_error = 0, None
    else:
        control.attempts = (control.attempts or 0) + 1
        control.last_attempt_at, control.last_error = now, (error or "")[:500]
    return control


async def _act(
    driver: RigDriver, name: str, action: Literal["curtail", "resume"], settings: ReconcileSettings
) -> tuple[str | None, RigStatus | None]:
    needed = Capability.CURTAIL if action == "curtail" else Capability.RESUME
    if needed not in driver.capabilities:
        return f"unsupported: {driver.family} rigs cannot {action}", None
    try:
        call = driver.curtail() if action == "curtail" else driver.resume()
        await asyncio.wait_for(call, settings.action_timeout_s)
    except RigUnsupportedAction as exc:
        return f"unsupported: {exc}", None
    except (RigError, TimeoutError, OSError) as exc:
        error = f"{action} failed: {exc or type(exc).__name__}"
        log.warning("rig did not obey", extra={"rig": name, "action": action, "error": str(exc)})
        return error, None
    # Read the state back: the driver verified, and the coordinator learns the new state now.
    status = await driver.status()
    expected = "curtailed" if action == "curtail" else "hashing"
    if status.state != expected and not (action == "resume" and status.state == "idle"):
        return f"{action} not verified: rig reports {status.state}", status
    return None, status
