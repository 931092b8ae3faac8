"""Remediation: an escalation ladder per rig and alert (restart mining, then reboot, then notify),
rate-limited per rig and per site, with bulk actions staggered in batches.

Planning is pure (alerts + time in, actions out); execution calls the rigs' drivers. Notifications
are emitted as `Notification` objects to a callback: delivering them is the controller's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, TypeVar

from miners.driver import Capability, RigDriver, RigError, RigUnsupportedAction
from miners.health import ActiveAlert

logger = logging.getLogger(__name__)

Step = Literal["restart_mining", "reboot", "notify"]
Outcome = Literal["done", "failed", "unsupported", "notified"]
T = TypeVar("T")

DEFAULT_LADDERS: dict[str, tuple[Step, ...]] = {
    "hashrate_low": ("restart_mining", "reboot", "notify"),
    "fan_stopped": ("restart_mining", "reboot", "notify"),
    # a hot rig is not fixed by restarting it, an unreachable one cannot be commanded,
    # and a hijacked one needs a human before anything else touches it
    "overheat": ("notify",),
    "offline": ("notify",),
    "pool_hijack": ("notify",),
}


@dataclass(frozen=True, slots=True)
class Notification:
    """A message for a human about one rig (delivered by the controller)."""

    rig: str
    site: str
    rule: str
    severity: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One step of a ladder decided for one rig at one time."""

    rig: str
    site: str
    rule: str
    step: Step
    level: int
    at: datetime
    message: str
    severity: str


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """What was done for a planned action, and how it went."""

    action: PlannedAction
    outcome: Outcome
    detail: str = ""


@dataclass(slots=True)
class _Ladder:
    level: int = 0  # index of the next step to take
    last_at: datetime | None = None


class RateLimiter:
    """Sliding window: at most `limit` events per `window` per key."""

    def __init__(self, limit: int, window: timedelta) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be >= 1, got {limit}")
        self.limit, self.window = limit, window
        self._events: dict[str, deque[datetime]] = {}

    def _trim(self, key: str, now: datetime) -> deque[datetime]:
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.window:
            events.popleft()
        return events

    def allows(self, key: str, now: datetime) -> bool:
        """True when one more event for `key` at `now` stays within the limit."""
        return len(self._trim(key, now)) < self.limit

    def record(self, key: str, now: datetime) -> None:
        """Count one event for `key` at `now`."""
        self._trim(key, now).append(now)


@dataclass(slots=True)
class RemediationPolicy:
    """Ladders per rule, time between steps, and the rate limits."""

    ladders: Mapping[str, tuple[Step, ...]] = field(default_factory=lambda: dict(DEFAULT_LADDERS))
    step_interval: timedelta = timedelta(minutes=10)
    per_rig_limit: int = 3
    per_rig_window: timedelta = timedelta(hours=1)
    per_site_limit: int = 20
    per_site_window: timedelta = timedelta(minutes=10)
    batch_size: int = 10
    batch_delay_s: float = 5.0


class Remediator:
    """Walks each alert's ladder one step at a time while the alert stays active."""

    def __init__(
        self,
        policy: RemediationPolicy | None = None,
        *,
        site_of: Callable[[str], str] | Mapping[str, str] | None = None,
        notify: Callable[[Notification], None] | None = None,
    ) -> None:
        self.policy = policy or RemediationPolicy()
        if isinstance(site_of, Mapping):
            sites = dict(site_of)
            self._site_of: Callable[[str], str] = lambda rig: sites.get(rig, "default")
        else:
            self._site_of = site_of or (lambda _rig: "default")
        self._notify = notify
        self.notifications: list[Notification] = []
        self._ladders: dict[tuple[str, str], _Ladder] = {}
        # only actions that touch a rig count against the limits; notifying is never throttled
        self._rig_limit = RateLimiter(self.policy.per_rig_limit, self.policy.per_rig_window)
        self._site_limit = RateLimiter(self.policy.per_site_limit, self.policy.per_site_window)
        self.deferred: list[tuple[PlannedAction, str]] = []

    def plan(self, alerts: Iterable[ActiveAlert], now: datetime) -> list[PlannedAction]:
        """Next ladder step for each active alert that is due at `now`, within the rate limits.

        A ladder resets when its alert is no longer active. Steps refused by a rate limit are
        listed in `self.deferred` (with the reason) and retried at the next call.
        """
        self.deferred = []
        active: dict[tuple[str, str], ActiveAlert] = {(a.rig, a.rule): a for a in alerts}
        for key in [k for k in self._ladders if k not in active]:
            del self._ladders[key]  # alert cleared: next time starts from the first step
        planned: list[PlannedAction] = []
        rigs_this_round: set[str] = set()

        # Fairness under the limits: ladders that waited longest (or never acted) go first.
        def waited(key: tuple[str, str]) -> tuple[bool, datetime, tuple[str, str]]:
            last = self._ladders[key].last_at if key in self._ladders else None
            return (last is not None, last or now, key)

        for rig, rule in sorted(active, key=waited):
            alert = active[(rig, rule)]
            steps = self.policy.ladders.get(rule)
            if not steps:
                continue
            ladder = self._ladders.setdefault((rig, rule), _Ladder())
            if ladder.level >= len(steps):
                continue  # ladder exhausted: the human was told; wait for the alert to clear
            if ladder.last_at is not None and now - ladder.last_at < self.policy.step_interval:
                continue  # give the last step time to work
            step = steps[ladder.level]
            site = self._site_of(rig)
            action = PlannedAction(
                rig, site, rule, step, ladder.level, now, alert.message, alert.severity
            )
            if step != "notify":
                if rig in rigs_this_round:
                    self.deferred.append((action, "another action for this rig this round"))
                    continue
                if not self._rig_limit.allows(rig, now):
                    self.deferred.append((action, "per-rig rate limit"))
                    continue
                if not self._site_limit.allows(site, now):
                    self.deferred.append((action, f"per-site rate limit (site {site})"))
                    continue
                self._rig_limit.record(rig, now)
                self._site_limit.record(site, now)
                rigs_this_round.add(rig)
            ladder.level += 1
            ladder.last_at = now
            planned.append(action)
        for action, reason in self.deferred:
            logger.info(
                "remediation deferred rig=%s step=%s reason=%s", action.rig, action.step, reason
            )
        return planned

    async def execute(
        self,
        actions: Sequence[PlannedAction],
        drivers: Mapping[str, RigDriver],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> list[ActionRecord]:
        """Run planned actions, rig actions staggered in batches; notifications go out at once."""
        records: list[ActionRecord] = []
        rig_actions: list[PlannedAction] = []
        for action in actions:
            if action.step == "notify":
                records.append(self._emit(action))
            else:
                rig_actions.append(action)

        async def run(action: PlannedAction) -> ActionRecord:
            return await self._run_rig_action(action, drivers.get(action.rig))

        records.extend(
            await staggered(
                [lambda a=a: run(a) for a in rig_actions],  # type: ignore[misc]
                batch_size=self.policy.batch_size,
                delay_s=self.policy.batch_delay_s,
                sleep=sleep,
            )
        )
        return records

    async def step(
        self,
        alerts: Iterable[ActiveAlert],
        drivers: Mapping[str, RigDriver],
        now: datetime,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> list[ActionRecord]:
        """Plan at `now` and execute: one remediation round."""
        return await self.execute(self.plan(alerts, now), drivers, sleep=sleep)

    def _emit(self, action: PlannedAction) -> ActionRecord:
        note = Notification(
            action.rig, action.site, action.rule, action.severity, action.message, action.at
        )
        self.notifications.append(note)
        if self._notify is not None:
            self._notify(note)
        logger.warning(
            "remediation notify rig=%s rule=%s message=%s", note.rig, note.rule, note.message
        )
        return ActionRecord(action, "notified")

    async def _run_rig_action(
        self, action: PlannedAction, driver: RigDriver | None
    ) -> ActionRecord:
        if driver is None:
            record = ActionRecord(action, "failed", "no driver for this rig (not identified yet)")
        else:
            try:
                detail = await _do_step(driver, action.step, action.rig)
                record = ActionRecord(action, "done", detail)
            except RigUnsupportedAction as exc:
                record = ActionRecord(action, "unsupported", str(exc))
            except (RigError, OSError, TimeoutError) as exc:
                record = ActionRecord(action, "failed", f"{type(exc).__name__}: {exc}")
        if record.outcome != "done":
            # a step that could not run must not leave the rig waiting a whole interval for nothing
            ladder = self._ladders.get((action.rig, action.rule))
            if ladder is not None:
                ladder.last_at = None
        logger.info(
            "remediation rig=%s step=%s outcome=%s detail=%s",
            action.rig,
            action.step,
            record.outcome,
            record.detail,
        )
        return record


async def _do_step(driver: RigDriver, step: Step, rig: str) -> str:
    if step == "reboot":
        if Capability.REBOOT not in driver.capabilities:
            raise RigUnsupportedAction(rig, f"{driver.family} driver cannot reboot")
        await driver.reboot()
        return "reboot sent"
    # restart_mining: the firmware's own restart when it has one, else curtail then resume
    restart = getattr(driver, "restart_mining", None)
    if Capability.RESTART_MINING in driver.capabilities and restart is not None:
        await restart()
        return "mining restarted"
    if {Capability.CURTAIL, Capability.RESUME} <= driver.capabilities:
        await driver.curtail()
        await driver.resume()
        return "mining restarted (curtail + resume)"
    raise RigUnsupportedAction(rig, f"{driver.family} driver cannot restart mining")


async def staggered(
    jobs: Sequence[Callable[[], Awaitable[T]]],
    *,
    batch_size: int,
    delay_s: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[T]:
    """Run jobs in batches of `batch_size` concurrently, waiting `delay_s` between batches.

    Staggering keeps a bulk reboot or resume from hitting the breakers (inrush) and the
    network all at once. Results come back in job order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if delay_s < 0:
        raise ValueError(f"delay_s must be >= 0, got {delay_s}")
    results: list[T] = []
    for start in range(0, len(jobs), batch_size):
        if start:
            await sleep(delay_s)
        batch = jobs[start : start + batch_size]
        results.extend(await asyncio.gather(*(job() for job in batch)))
    return results
