"""Health rules over rig statuses, with the "sustained for N minutes" semantics of Awesome Miner
and minerstat triggers: a condition must hold continuously for the rule's window before its alert
fires, and the alert clears on the first evaluation where the condition no longer holds.

Pure: the caller passes the statuses and the evaluation time; nothing here sleeps or reads a clock.
A reading that cannot be judged (rig offline, expected hashrate unknown) is *no evidence*: it
restarts a pending window (continuity is not proven) but does not clear an alert that is firing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol
from urllib.parse import urlsplit

import hardware
from miners.fleet import rig_key
from miners.status import RigStatus

logger = logging.getLogger(__name__)

Severity = Literal["warning", "critical"]
EventKind = Literal["fired", "cleared"]
DEFAULT_TEMP_LIMIT_C = 85.0  # typical hashboard limit of air-cooled SHA-256 rigs


class Rule(Protocol):
    """One health rule: a name, a window, a severity and a condition on one status."""

    @property
    def name(self) -> str:
        """Unique rule name (used in events and remediation ladders)."""
        ...

    @property
    def window(self) -> timedelta:
        """How long the condition must hold continuously before the alert fires."""
        ...

    @property
    def severity(self) -> Severity:
        """Severity of the alert."""
        ...

    def check(self, status: RigStatus) -> str | Literal[False] | None:
        """A message when the condition holds, False when it does not, None when unknowable."""
        ...


@dataclass(frozen=True, slots=True)
class HashrateLow:
    """Hashing rig below `min_pct` % of its expected hashrate."""

    min_pct: float = 80.0
    window: timedelta = timedelta(minutes=10)
    severity: Severity = "warning"
    name: str = "hashrate_low"

    def check(self, status: RigStatus) -> str | Literal[False] | None:
        """Curtailed/idle rigs are low on purpose: not a fault."""
        if status.state in ("curtailed", "idle"):
            return False
        if status.state == "offline" or status.hashrate_ths is None:
            return None
        expected = status.expected_hashrate_ths
        if not expected or expected <= 0:
            return None
        pct = 100.0 * status.hashrate_ths / expected
        if pct < self.min_pct:
            return (
                f"hashrate {status.hashrate_ths:.2f} TH/s is {pct:.1f} % of expected "
                f"{expected:.2f} TH/s (limit {self.min_pct:g} %)"
            )
        return False


@dataclass(frozen=True, slots=True)
class Overheat:
    """Hottest board or chip above the model's limit.

    The limit is `limits[model]` when given, else the hardware catalog's `max_temp_c` for the
    model (with `use_catalog`), else `default_limit_c`.
    """

    limits: Mapping[str, float] = field(default_factory=dict)
    default_limit_c: float = DEFAULT_TEMP_LIMIT_C
    use_catalog: bool = True
    window: timedelta = timedelta(minutes=2)
    severity: Severity = "critical"
    name: str = "overheat"

    def limit_for(self, model: str | None) -> float:
        """Limit for a model name (case-insensitive), else the catalog's, else the default."""
        if model:
            for key, value in self.limits.items():
                if key.lower() == model.lower():
                    return value
            if self.use_catalog:
                from hardware import lookup  # the rig model catalog: a domain package, data only

                known = lookup(model)
                if known is not None:
                    return known.max_temp_c
        return self.default_limit_c

    def check(self, status: RigStatus) -> str | Literal[False] | None:
        """Judged on every board's board and chip temperature."""
        if status.state == "offline":
            return None
        temps = [
            t for b in status.boards for t in (b.temp_c, b.chip_temp_c) if t is not None and t > 0
        ]
        if not temps:
            return None
        hottest, limit = max(temps), self.limit_for(status.model)
        if hottest > limit:
            model = status.model or "default"
            return f"temperature {hottest:.1f} C over the {model} limit {limit:g} C"
        return False


@dataclass(frozen=True, slots=True)
class FanStopped:
    """A fan reads 0 RPM while the rig hashes (sleeping rigs stop fans on purpose)."""

    window: timedelta = timedelta(minutes=1)
    severity: Severity = "critical"
    name: str = "fan_stopped"

    def check(self, status: RigStatus) -> str | Literal[False] | None:
        """Only a hashing rig with fan readings can be judged."""
        if status.state != "hashing":
            return None if status.state == "offline" else False
        if not status.fans_rpm:
            return None
        model = hardware.lookup(status.model)
        if model is not None and model.fans is not None:
            # Controllers report empty fan headers too (Braiins OS lists 4 slots on a 2-fan S9):
            # judge the number of fans running against the number the model has.
            running = sum(1 for rpm in status.fans_rpm if rpm > 0)
            if running >= model.fans:
                return False
            if len(status.fans_rpm) != model.fans:
                return f"{model.fans - running} of {model.fans} fans stopped while hashing"
        stopped = [i for i, rpm in enumerate(status.fans_rpm) if rpm <= 0]
        if stopped:
            return f"fan(s) {', '.join(map(str, stopped))} stopped while hashing"
        return False


def _pool_endpoint(url: str) -> tuple[str, int | None]:
    text = url.strip().lower()
    if "://" not in text:
        text = "stratum+tcp://" + text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "", port)


@dataclass(frozen=True, slots=True)
class PoolHijack:
    """A configured pool not in the allowed list, or a worker not under an allowed account.

    `allowed_pools` entries are URLs or `host[:port]`; an entry without a port allows any port.
    `allowed_users` are account prefixes (`myfarm` allows `myfarm.rig07`); empty allows any user.
    """

    allowed_pools: tuple[str, ...]
    allowed_users: tuple[str, ...] = ()
    window: timedelta = timedelta(0)
    severity: Severity = "critical"
    name: str = "pool_hijack"

    def _pool_allowed(self, url: str) -> bool:
        host, port = _pool_endpoint(url)
        for entry in self.allowed_pools:
            a_host, a_port = _pool_endpoint(entry)
            if host == a_host and (a_port is None or a_port == port):
                return True
        return False

    def _user_allowed(self, user: str | None) -> bool:
        if not self.allowed_users:
            return True
        if not user:
            return False
        account = user.split(".", 1)[0].lower()
        return any(
            account == a.lower() or user.lower().startswith(a.lower()) for a in self.allowed_users
        )

    def check(self, status: RigStatus) -> str | Literal[False] | None:
        """Every pool the rig has configured is checked, not only the active one."""
        if status.state == "offline":
            return None
        if not status.pools:
            return None
        bad: list[str] = []
        for pool in status.pools:
            if not pool.url:
                continue
            if not self._pool_allowed(pool.url):
                bad.append(f"pool {pool.url} not allowed")
            elif not self._user_allowed(pool.user):
                bad.append(f"worker {pool.user!r} on {pool.url} not under an allowed account")
        return "; ".join(bad) if bad else False


@dataclass(frozen=True, slots=True)
class Offline:
    """Rig did not answer."""

    window: timedelta = timedelta(minutes=5)
    severity: Severity = "critical"
    name: str = "offline"

    def check(self, status: RigStatus) -> str | Literal[False] | None:
        """Offline is always judgeable."""
        if status.state == "offline":
            return f"offline: {status.state_reason or 'no reply'}"
        return False


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """An alert firing or clearing for one rig and one rule."""

    rig: str
    rule: str
    kind: EventKind
    at: datetime
    severity: Severity
    message: str
    since: datetime | None = None


@dataclass(slots=True)
class _Track:
    since: datetime | None = None  # start of the continuous run of the condition
    firing: bool = False
    message: str = ""


@dataclass(frozen=True, slots=True)
class ActiveAlert:
    """An alert that is firing now."""

    rig: str
    rule: str
    severity: Severity
    since: datetime
    message: str


class HealthMonitor:
    """Evaluates rules over successive polls and emits fired/cleared events."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules: list[Rule] = list(rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique, got {names}")
        self._tracks: dict[tuple[str, str], _Track] = {}

    def evaluate(self, statuses: Iterable[RigStatus], now: datetime) -> list[HealthEvent]:
        """Feed one poll's statuses observed at `now`; returns the events this poll caused."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        events: list[HealthEvent] = []
        for status in statuses:
            rig = rig_key(status)
            for rule in self.rules:
                track = self._tracks.setdefault((rig, rule.name), _Track())
                verdict = rule.check(status)
                if verdict is None:
                    # no evidence: a pending window restarts; a firing alert stays
                    if not track.firing:
                        track.since = None
                    continue
                if verdict is False:
                    if track.firing:
                        events.append(
                            HealthEvent(
                                rig,
                                rule.name,
                                "cleared",
                                now,
                                rule.severity,
                                f"cleared: {track.message}",
                                track.since,
                            )
                        )
                    self._tracks.pop((rig, rule.name), None)
                    continue
                if track.since is None:
                    track.since = now
                track.message = verdict
                if not track.firing and now - track.since >= rule.window:
                    track.firing = True
                    events.append(
                        HealthEvent(
                            rig, rule.name, "fired", now, rule.severity, verdict, track.since
                        )
                    )
        for event in events:
            logger.info(
                "health event rig=%s rule=%s kind=%s message=%s",
                event.rig,
                event.rule,
                event.kind,
                event.message,
            )
        return events

    def active(self) -> list[ActiveAlert]:
        """Alerts firing now, sorted by rig then rule."""
        out = [
            ActiveAlert(rig, rule_name, self._rule(rule_name).severity, t.since, t.message)
            for (rig, rule_name), t in self._tracks.items()
            if t.firing and t.since is not None
        ]
        return sorted(out, key=lambda a: (a.rig, a.rule))

    def _rule(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def forget(self, rig: str) -> None:
        """Drop every track of a rig (removed from the fleet)."""
        for key in [k for k in self._tracks if k[0] == rig]:
            del self._tracks[key]


def default_rules(
    *,
    allowed_pools: Iterable[str] = (),
    allowed_users: Iterable[str] = (),
    temp_limits: Mapping[str, float] | None = None,
    default_temp_limit_c: float = DEFAULT_TEMP_LIMIT_C,
    hashrate_min_pct: float = 80.0,
) -> list[Rule]:
    """The standard rule set; the pool-hijack rule only when an allowed list is given."""
    rules: list[Rule] = [
        Offline(),
        HashrateLow(min_pct=hashrate_min_pct),
        Overheat(limits=dict(temp_limits or {}), default_limit_c=default_temp_limit_c),
        FanStopped(),
    ]
    pools = tuple(allowed_pools)
    if pools:
        rules.append(PoolHijack(allowed_pools=pools, allowed_users=tuple(allowed_users)))
    return rules
