"""A central plan: site power targets ("cap the site at N kW" or "shed N kW") and their acks.

A central planner sends a target for a site over MQTT (`<bridge prefix>/<site>/power_target`),
or inserts a row in `site_power_target`, or an operator adds one with `farmctl site target add`.
Every path ends as one row, keyed by the target's id: a re-delivered message changes nothing,
and a restarted gateway finds its targets again.

On each reconcile the site's gateway takes the target in force (at most one per site: a newer
target whose window overlaps an older one supersedes the older one, whole), caps the desired
states that override > plan > default produced, and acts on them like any other change. The
cap only ever curtails: a rig the plan or an override curtails is never resumed to fill it,
and a rig an override keeps hashing is never curtailed by it. Rigs are curtailed least efficient
first (J/TH bucketed to 0.5 as the planner groups them); within a bucket rigs already curtailed
stay curtailed first, so measurement noise does not swap rigs back and forth.

Power: a hashing rig counts its resolved power (meter > reported > nameplate); a curtailed rig
that would resume counts the larger of its nameplate and the last power it drew while hashing
(a resume is never under-estimated); a rig held curtailed counts what it draws asleep.

Ramp: the cap in force moves linearly from the site's power when the gateway first applied the
target (`baseline_kw`) down to the cap over `ramp_s`, so curtailments are spread over the ramp
(a fraction of the kW per reconcile, each in staggered batches). When the window ends the
target stops capping and the rigs return to the plan on the next reconcile.

The gateway acknowledges each target after every reconcile that changes its state, reason or
achieved kW (by at least `ACK_MIN_CHANGE_KW` or 1 % of the cap): on the ack columns of its row,
and through the MQTT outbox on `<bridge prefix>/<site>/power_target/ack` (retained, QoS 1).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from sqlalchemy import Connection, or_, select
from sqlalchemy.orm import Session, sessionmaker

import hardware
from controller.clock import as_utc
from controller.config import RigConfig
from controller.reconcile import Desired
from controller.tables import RigControl, SitePowerTargetRow
from miners.status import RigStatus

log = logging.getLogger(__name__)

MAX_WINDOW = timedelta(days=7)
MAX_RAMP_S = 86_400.0
ACK_MIN_CHANGE_KW = 1.0
MAX_TARGET_BYTES = 16 * 1024
Mode = Literal["to_kw", "by_kw"]
AckState = Literal["pending", "ramping", "met", "unreachable", "ended", "rejected"]
# Acks of these states describe the site now: retained, so a planner that subscribes later
# sees the current state. `pending` and `rejected` acks are not retained (they would hide it).
RETAINED_STATES = frozenset({"ramping", "met", "unreachable", "ended"})
LIVE_STATES = ("pending", "ramping", "met", "unreachable")
TargetId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s/+#]+$")]
SiteName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^/+#]+$")]


class TargetError(ValueError):
    """A target that cannot be stored (unknown site, bad numbers, window over...)."""


class SitePowerTarget(BaseModel):
    """One power target for one site, as a central planner sends it (the MQTT payload)."""

    model_config = ConfigDict(extra="forbid")
    id: TargetId
    site: SiteName
    mode: Mode
    kw: float = Field(ge=0, allow_inf_nan=False, description="cap (to_kw) or reduction (by_kw)")
    ramp_s: float = Field(default=0.0, ge=0, le=MAX_RAMP_S, allow_inf_nan=False)
    start: AwareDatetime | None = Field(default=None, description="default: when received")
    end: AwareDatetime
    issuer: Annotated[str, Field(min_length=1, max_length=64)]
    issued_at: AwareDatetime

    @model_validator(mode="after")
    def _sane(self) -> SitePowerTarget:
        if self.mode == "by_kw" and self.kw <= 0:
            raise ValueError("by_kw needs a reduction above 0 kW")
        if self.start is not None and self.end <= self.start:
            raise ValueError(
                f"target end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )
        return self

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """Start and end in UTC (start defaults to `now`)."""
        start = (self.start or now).astimezone(UTC)
        return start, self.end.astimezone(UTC)


def check_target(target: SitePowerTarget, sites: Iterable[str], now: datetime) -> None:
    """Refuse what a gateway cannot apply: an unknown site, a window over or too long."""
    known = sorted(sites)
    if target.site not in known:
        raise TargetError(f"unknown site {target.site!r}; known: {known}")
    start, end = target.window(now)
    if end <= now:
        raise TargetError(f"target window already over (ended {end.isoformat()})")
    if end <= start:
        raise TargetError(f"target end {end.isoformat()} is not after start {start.isoformat()}")
    if end - start > MAX_WINDOW:
        raise TargetError(f"target window {end - start} is longer than {MAX_WINDOW}")


def describe(exc: ValidationError) -> str:
    """A target's validation errors in one line: `kw: Input should be ...; end: ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'target'}: "
        + e["msg"].removeprefix("Value error, ")
        for e in exc.errors()[:5]
    )


def parse_target(payload: bytes, site: str) -> SitePowerTarget:
    """A target from an MQTT payload on `<prefix>/<site>/power_target`; the site must match."""
    if len(payload) > MAX_TARGET_BYTES:
        raise TargetError(f"target of {len(payload)} bytes exceeds {MAX_TARGET_BYTES}")
    try:
        target = SitePowerTarget.model_validate_json(payload)
    except ValidationError as exc:
        raise TargetError(f"invalid target: {describe(exc)}") from None
    if target.site != site:
        raise TargetError(f"target for site {target.site!r} sent on the topic of site {site!r}")
    return target


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What storing a target did: stored now, or already known (a redelivery)."""

    id: str
    stored: bool
    superseded: list[str] = field(default_factory=list)
    superseded_by: str | None = None


def store_target(
    session: Session,
    target: SitePowerTarget,
    sites: Iterable[str],
    *,
    source: Literal["mqtt", "cli", "db"],
    now: datetime,
) -> StoreResult:
    """Check and store a target in the caller's transaction (idempotent by id)."""
    existing = session.get(SitePowerTargetRow, target.id)
    if existing is not None:
        return StoreResult(target.id, stored=False, superseded_by=existing.superseded_by)
    check_target(target, sites, now)
    start, end = target.window(now)
    row = SitePowerTargetRow(
        id=target.id,
        site=target.site,
        mode=target.mode,
        kw=float(target.kw),
        ramp_s=float(target.ramp_s),
        starts_at=start,
        ends_at=end,
        issuer=target.issuer,
        issued_at=target.issued_at.astimezone(UTC),
        source=source,
        cancelled=False,
        state="pending",
        acked_at=now,
    )
    session.add(row)
    session.flush()
    losers = supersede(session, [target.site], now)
    return StoreResult(
        target.id,
        stored=True,
        superseded=[r.id for r in losers if r.id != target.id],
        superseded_by=row.superseded_by,
    )


def _rank(row: SitePowerTargetRow) -> tuple[datetime, str]:
    # Newer issue time wins; equal times fall back to the id so every gateway agrees.
    return as_utc(row.issued_at), row.id


def supersede(session: Session, sites: Sequence[str], now: datetime) -> list[SitePowerTargetRow]:
    """Mark every live target that a newer one of the same site overlaps as superseded.

    The rule: of two targets of one site whose windows overlap, the one issued later (then the
    larger id) wins and the other is superseded for its whole window. Returns the rows marked.
    """
    rows = list(
        session.scalars(
            select(SitePowerTargetRow).where(
                SitePowerTargetRow.site.in_(list(sites)),
                SitePowerTargetRow.ends_at > now,
                SitePowerTargetRow.cancelled.is_not(True),
                SitePowerTargetRow.superseded_by.is_(None),
                SitePowerTargetRow.state.in_(LIVE_STATES),
            )
        )
    )
    marked = []
    # Newest first: each row is beaten by the newest overlapping row still standing.
    standing: list[SitePowerTargetRow] = []
    for row in sorted(rows, key=_rank, reverse=True):
        winner = next(
            (
                w
                for w in standing
                if w.site == row.site
                and as_utc(w.starts_at) < as_utc(row.ends_at)
                and as_utc(row.starts_at) < as_utc(w.ends_at)
            ),
            None,
        )
        if winner is None:
            standing.append(row)
            continue
        row.superseded_by = winner.id
        marked.append(row)
        log.info("power target superseded", extra={"target": row.id, "by": winner.id})
    return marked


def cancel_target(sessions: sessionmaker[Session], target_id: str) -> bool:
    """Cancel a target: the plan governs again from the next reconcile. False if unknown."""
    with sessions.begin() as session:
        row = session.get(SitePowerTargetRow, target_id)
        if row is None:
            return False
        row.cancelled = True
        return True


def list_targets(
    sessions: sessionmaker[Session], now: datetime, include_past: bool = False
) -> list[SitePowerTargetRow]:
    """Targets in force or to come (every one with `include_past`), detached from the session."""
    query = select(SitePowerTargetRow).order_by(SitePowerTargetRow.starts_at)
    if not include_past:
        query = query.where(
            SitePowerTargetRow.ends_at > now, SitePowerTargetRow.cancelled.is_not(True)
        )
    with sessions() as session:
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def new_target_id() -> str:
    """An id for a target made here (CLI)."""
    return f"cli-{uuid.uuid4().hex[:16]}"


# ---- the cap -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RigPower:
    """What the cap needs to know about one rig of the site."""

    name: str
    desired: Desired  # after override > plan > default
    why: str  # "override:<id>", "plan:<id>", "default"
    state: str  # the rig's state at the last poll
    power_w: float  # what it draws now (0 when unknown)
    hashing_w: float  # what it draws hashing: now if hashing, else its would-be power
    jth: float | None  # efficiency for the ordering (None: unknown, curtailed last)
    curtailable: bool = True  # False: its firmware cannot, or it disobeyed

    @property
    def online(self) -> bool:
        """The rig answered the last poll."""
        return self.state not in ("offline", "error")


@dataclass(slots=True)
class CapDecision:
    """Which rigs the cap curtails, and what the site would draw with them curtailed."""

    cap_w: float
    curtail: list[str]
    projected_w: float  # with the chosen rigs curtailed
    shortfall_w: float  # above the cap even with every curtailable rig curtailed
    held_by_override: list[str] = field(default_factory=list)
    not_curtailable: list[str] = field(default_factory=list)
    offline: list[str] = field(default_factory=list)
    # offline rigs desired hashing -> what they would draw hashing (unseen, maybe drawing)
    offline_w: dict[str, float] = field(default_factory=dict)


def _bucket(jth: float | None) -> float:
    return -1.0 if jth is None else round(jth * 2) / 2


def _expected_w(rig: RigPower) -> float:
    # A rig desired hashing draws its hashing power; one desired curtailed draws what it draws
    # now if it is already asleep (standby), nothing we can count on otherwise.
    if rig.desired == "hashing":
        return rig.hashing_w
    return rig.power_w if rig.state == "curtailed" else 0.0


def select_curtailments(rigs: Sequence[RigPower], cap_w: float) -> CapDecision:
    """The rigs to curtail so that the site's projected power stays at or under `cap_w`.

    Only rigs desired hashing without an override are candidates, least efficient first;
    within an efficiency bucket, rigs already curtailed first, then the larger draw, then name.
    """
    online = [r for r in rigs if r.online]
    projected = sum(_expected_w(r) for r in online)
    decision = CapDecision(
        cap_w=cap_w,
        curtail=[],
        projected_w=projected,
        shortfall_w=0.0,
        offline=[r.name for r in rigs if not r.online and r.desired == "hashing"],
        offline_w={r.name: r.hashing_w for r in rigs if not r.online and r.desired == "hashing"},
    )
    if projected <= cap_w:
        return decision
    candidates = []
    for rig in online:
        if rig.desired != "hashing":
            continue
        if rig.why.startswith("override:"):
            decision.held_by_override.append(rig.name)
        elif not rig.curtailable:
            decision.not_curtailable.append(rig.name)
        else:
            candidates.append(rig)
    candidates.sort(key=lambda r: (-_bucket(r.jth), r.state != "curtailed", -r.hashing_w, r.name))
    for rig in candidates:
        if projected <= cap_w:
            break
        decision.curtail.append(rig.name)
        # Asleep it still draws its standby, which only a rig already asleep tells us.
        projected -= rig.hashing_w - (rig.power_w if rig.state == "curtailed" else 0.0)
    decision.projected_w = projected
    decision.shortfall_w = max(0.0, projected - cap_w)
    return decision


def ramp_fraction(applied_at: datetime, ramp_s: float, now: datetime) -> float:
    """Share of the way from the baseline to the cap at `now` (1 without a ramp)."""
    if ramp_s <= 0:
        return 1.0
    return min(1.0, max(0.0, (now - applied_at).total_seconds() / ramp_s))


def cap_in_force(baseline_w: float, cap_w: float, fraction: float) -> float:
    """The cap at this point of the ramp: linear from the baseline down to the cap."""
    if baseline_w <= cap_w:
        return cap_w
    return baseline_w - (baseline_w - cap_w) * fraction


# ---- the gateway side -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SitePowerAck:
    """A gateway's acknowledgement of one target (the MQTT ack payload and the row's columns)."""

    target_id: str
    site: str
    state: AckState
    ts: datetime
    mode: str | None = None
    requested_kw: float | None = None
    cap_kw: float | None = None
    cap_now_kw: float | None = None
    baseline_kw: float | None = None
    achieved_kw: float | None = None
    reason: str | None = None
    curtailed_rigs: int = 0
    offline_rigs: int = 0

    def payload(self) -> dict[str, Any]:
        """The JSON body published on the ack topic."""
        body: dict[str, Any] = {
            "target_id": self.target_id,
            "site": self.site,
            "state": self.state,
            "mode": self.mode,
            "requested_kw": self.requested_kw,
            "cap_kw": _kw(self.cap_kw),
            "cap_now_kw": _kw(self.cap_now_kw),
            "baseline_kw": _kw(self.baseline_kw),
            "achieved_kw": _kw(self.achieved_kw),
            "reason": self.reason,
            "curtailed_rigs": self.curtailed_rigs,
            "offline_rigs": self.offline_rigs,
            "ts": self.ts.isoformat(),
        }
        return body


def _kw(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# (connection of the transaction writing the ack, the ack) -> queue it for MQTT
AckPublisher = Callable[[Connection, SitePowerAck], None]


@dataclass(slots=True)
class _Applied:
    row_id: str
    site: str
    mode: str
    kw: float
    cap_w: float
    cap_now_w: float
    baseline_w: float
    fraction: float
    decision: CapDecision
    blind: bool = False  # no rig of the site answered: nothing measured, nothing decided


class SiteTargets:
    """The gateway's side: caps the desired states while a target is in force, then acks it."""

    def __init__(self, sites: Iterable[str], rigs: Sequence[RigConfig]) -> None:
        self.rigs = list(rigs)
        self.sites = sorted(sites)
        self._site_of = {r.name: r.site for r in self.rigs}
        self._model_of = {r.name: r.model for r in self.rigs}
        # Last power and J/TH seen while hashing: a curtailed rig's would-be draw and its rank.
        self._hashing_seen: dict[str, tuple[float | None, float | None]] = {}
        self._applied: dict[str, _Applied] = {}  # site -> target applied in this reconcile
        self.publish_ack: AckPublisher | None = None
        self.after_ack: Callable[[], None] | None = None
        self.in_force: dict[str, SitePowerAck] = {}  # site -> latest ack (metrics, views)

    # ---- inputs --------------------------------------------------------------------------
    def remember(self, statuses: Mapping[str, RigStatus]) -> None:
        """Keep each hashing rig's power and efficiency (called after every poll)."""
        for name, status in statuses.items():
            if status.state == "hashing" and status.power_w:
                self._hashing_seen[name] = (status.power_w, status.efficiency_jth)

    def _rig_power(
        self,
        name: str,
        desired: Desired,
        why: str,
        status: RigStatus | None,
        control: RigControl | None,
    ) -> RigPower:
        model = hardware.lookup(self._model_of.get(name)) or hardware.lookup(
            status.model if status else None
        )
        seen_w, seen_jth = self._hashing_seen.get(name, (None, None))
        state = status.state if status is not None else "offline"
        now_w = (status.power_w or 0.0) if status is not None else 0.0
        if state == "hashing" and now_w > 0:
            hashing_w = now_w
        else:
            hashing_w = max(model.power_w if model else 0.0, seen_w or 0.0)
        jth = (status.efficiency_jth if status and state == "hashing" else None) or seen_jth
        jth = jth or (model.efficiency_jth if model else None)
        refused = control is not None and control.status in ("disobedient", "unsupported")
        # A rig that refused to curtail keeps hashing whatever we say; one that refused to
        # resume is asleep anyway and may be counted as curtailed.
        curtailable = not (refused and control is not None and control.desired == "curtailed")
        return RigPower(name, desired, why, state, now_w, hashing_w, jth, curtailable)

    # ---- reconcile hook ------------------------------------------------------------------
    def apply(
        self,
        session: Session,
        wanted: dict[str, tuple[Desired, str]],
        statuses: Mapping[str, RigStatus],
        controls: Mapping[str, RigControl],
        now: datetime,
    ) -> None:
        """Cap `wanted` in place for each site with a target in force (inside reconcile)."""
        if not self.sites:
            return
        self._reject_invalid(session, now)
        supersede(session, self.sites, now)
        live = session.scalars(
            select(SitePowerTargetRow).where(
                SitePowerTargetRow.site.in_(self.sites),
                SitePowerTargetRow.starts_at <= now,
                SitePowerTargetRow.ends_at > now,
                SitePowerTargetRow.cancelled.is_not(True),
                SitePowerTargetRow.superseded_by.is_(None),
                SitePowerTargetRow.state.in_(LIVE_STATES),
            )
        )
        applied: dict[str, _Applied] = {}
        for row in live:
            rigs = [
                self._rig_power(name, d, why, statuses.get(name), controls.get(name))
                for name, (d, why) in wanted.items()
                if self._site_of.get(name) == row.site
            ]
            if not any(r.online for r in rigs):
                # Nothing measured (no poll yet after a start, or the site's network is down):
                # neither a baseline nor a choice of rigs can be made from nothing.
                cap_w = row.kw * 1000 if row.mode == "to_kw" else (row.cap_kw or 0.0) * 1000
                applied[row.site] = _Applied(
                    row.id, row.site, row.mode, row.kw, cap_w, cap_w, 0.0, 0.0,
                    CapDecision(cap_w, [], 0.0, 0.0), blind=True,
                )  # fmt: skip
                continue
            if row.applied_at is None:
                # The baseline is what the site draws when the gateway first applies the target.
                row.applied_at = now
                row.baseline_kw = sum(r.power_w for r in rigs if r.online) / 1000
                row.cap_kw = row.kw if row.mode == "to_kw" else max(0.0, row.baseline_kw - row.kw)
                log.info(
                    "power target applied",
                    extra={"target": row.id, "site": row.site, "cap_kw": row.cap_kw},
                )
            baseline_w = (row.baseline_kw or 0.0) * 1000
            cap_w = (row.cap_kw or 0.0) * 1000
            fraction = ramp_fraction(as_utc(row.applied_at), row.ramp_s, now)
            cap_now = cap_in_force(baseline_w, cap_w, fraction)
            decision = select_curtailments(rigs, cap_now)
            for name in decision.curtail:
                wanted[name] = ("curtailed", f"target:{row.id}")
            applied[row.site] = _Applied(
                row.id, row.site, row.mode, row.kw, cap_w, cap_now, baseline_w, fraction, decision
            )
        # Swapped whole: the ack after a poll may read it from another thread meanwhile.
        self._applied = applied

    def _reject_invalid(self, session: Session, now: datetime) -> None:
        # Rows a planner inserted by hand are checked like any other target, once.
        fresh = session.scalars(
            select(SitePowerTargetRow).where(
                SitePowerTargetRow.site.in_(self.sites), SitePowerTargetRow.state.is_(None)
            )
        )
        for row in fresh:
            problem = _row_problem(row, now)
            if problem is None:
                row.state, row.acked_at = "pending", now
                self._queue_ack(
                    session.connection(),
                    SitePowerAck(row.id, row.site, "pending", now, row.mode, row.kw),
                )
                continue
            row.state, row.state_reason, row.acked_at = "rejected", problem[:500], now
            log.warning("power target rejected", extra={"target": row.id, "error": problem})
            self._queue_ack(
                session.connection(),
                SitePowerAck(row.id, row.site, "rejected", now, row.mode, row.kw, reason=problem),
            )

    # ---- acknowledgement -----------------------------------------------------------------
    def acknowledge(
        self, sessions: sessionmaker[Session], statuses: Mapping[str, RigStatus], now: datetime
    ) -> list[SitePowerAck]:
        """Record and queue the ack of each target applied in this reconcile, and of targets
        that ended since the last one; returns the acks written."""
        written = []
        in_force: dict[str, SitePowerAck] = {}
        with sessions.begin() as session:
            # Ended ones first: the ack topic is retained per site, the target in force last.
            for row in self._ended(session, now):
                reason = (
                    "cancelled"
                    if row.cancelled
                    else f"superseded by {row.superseded_by}"
                    if row.superseded_by
                    else "window over"
                )
                ack = SitePowerAck(
                    row.id,
                    row.site,
                    "ended",
                    now,
                    row.mode,
                    row.kw,
                    cap_kw=row.cap_kw,
                    baseline_kw=row.baseline_kw,
                    achieved_kw=self._site_kw(row.site, statuses)[0],
                    reason=reason,
                )
                self._write_ack(session, row, ack)
                written.append(ack)
            for site, applied in self._applied.items():
                live = session.get(SitePowerTargetRow, applied.row_id)
                if live is None or live.state not in LIVE_STATES or as_utc(live.ends_at) <= now:
                    continue
                if live.cancelled or live.superseded_by:
                    continue
                row = live
                ack = self._ack_for(applied, statuses, now)
                if self._ack_changed(row, ack):
                    self._write_ack(session, row, ack)
                    written.append(ack)
                in_force[site] = ack
        self.in_force = in_force
        if written and self.after_ack is not None:
            self.after_ack()
        return written

    def _site_kw(self, site: str, statuses: Mapping[str, RigStatus]) -> tuple[float, int]:
        total, offline = 0.0, 0
        for name, status in statuses.items():
            if self._site_of.get(name) != site:
                continue
            if status.state in ("offline", "error"):
                offline += 1
            total += status.power_w or 0.0
        return total / 1000, offline

    def _ack_for(
        self, applied: _Applied, statuses: Mapping[str, RigStatus], now: datetime
    ) -> SitePowerAck:
        achieved_kw, offline = self._site_kw(applied.site, statuses)
        d = applied.decision
        state: AckState
        reason = None
        # Offline rigs the plan wants hashing may be drawing up to their hashing power unseen.
        unseen_w = sum(d.offline_w.values())
        if applied.blind:
            state, reason = "unreachable", "no rig of the site answered the last poll"
        elif d.shortfall_w > 0:
            state = "unreachable"
            blockers = []
            if d.held_by_override:
                blockers.append(f"{len(d.held_by_override)} rigs kept hashing by overrides")
            if d.not_curtailable:
                blockers.append(f"{len(d.not_curtailable)} rigs refuse to curtail")
            if not blockers:
                blockers.append("no rig left to curtail")
            reason = f"short by {d.shortfall_w / 1000:.1f} kW: " + ", ".join(blockers)
        elif applied.fraction < 1.0 or achieved_kw * 1000 > applied.cap_now_w + 1.0:
            state = "ramping"  # on the ramp, or rigs still winding down / retrying
        elif achieved_kw * 1000 + unseen_w > applied.cap_now_w + 1.0:
            state = "unreachable"  # met as far as we can see, not for certain
        else:
            state = "met"
        if d.offline and not applied.blind:
            note = (
                f"{len(d.offline)} rigs offline: their power is unknown "
                f"(up to {unseen_w / 1000:.1f} kW)"
            )
            reason = f"{reason}; {note}" if reason else note
        curtailed = sum(
            1
            for name, status in statuses.items()
            if self._site_of.get(name) == applied.site and status.state == "curtailed"
        )
        return SitePowerAck(
            applied.row_id,
            applied.site,
            state,
            now,
            applied.mode,
            applied.kw,
            cap_kw=applied.cap_w / 1000,
            cap_now_kw=applied.cap_now_w / 1000,
            baseline_kw=applied.baseline_w / 1000,
            achieved_kw=achieved_kw,
            reason=reason,
            curtailed_rigs=curtailed,
            offline_rigs=offline,
        )

    @staticmethod
    def _ack_changed(row: SitePowerTargetRow, ack: SitePowerAck) -> bool:
        if row.state != ack.state or (row.state_reason or None) != ack.reason:
            return True
        if row.achieved_kw is None or ack.achieved_kw is None:
            return row.achieved_kw != ack.achieved_kw
        threshold = max(ACK_MIN_CHANGE_KW, 0.01 * (ack.cap_kw or 0.0))
        return abs(row.achieved_kw - ack.achieved_kw) >= threshold

    def _ended(self, session: Session, now: datetime) -> list[SitePowerTargetRow]:
        # Applied targets not yet acked as ended whose window is over, or that were cancelled
        # or superseded; a target never applied ends without an ack of its own beyond this one.
        rows = session.scalars(
            select(SitePowerTargetRow).where(
                SitePowerTargetRow.site.in_(self.sites),
                SitePowerTargetRow.state.in_(LIVE_STATES),
                or_(
                    SitePowerTargetRow.ends_at <= now,
                    SitePowerTargetRow.cancelled.is_(True),
                    SitePowerTargetRow.superseded_by.is_not(None),
                ),
            )
        )
        return list(rows)

    def _write_ack(self, session: Session, row: SitePowerTargetRow, ack: SitePowerAck) -> None:
        row.state, row.state_reason = ack.state, ack.reason
        row.achieved_kw, row.acked_at = ack.achieved_kw, ack.ts
        self._queue_ack(session.connection(), ack)
        log.info(
            "power target ack",
            extra={
                "target": ack.target_id,
                "site": ack.site,
                "state": ack.state,
                "achieved_kw": _kw(ack.achieved_kw),
                "cap_now_kw": _kw(ack.cap_now_kw),
            },
        )

    def _queue_ack(self, conn: Connection, ack: SitePowerAck) -> None:
        if self.publish_ack is not None:
            self.publish_ack(conn, ack)


def _row_problem(row: SitePowerTargetRow, now: datetime) -> str | None:
    if row.mode not in ("to_kw", "by_kw"):
        return f"mode {row.mode!r} is neither to_kw nor by_kw"
    if row.kw is None or not math.isfinite(row.kw) or row.kw < 0:
        return f"kw {row.kw!r} must be a number >= 0"
    if row.mode == "by_kw" and row.kw <= 0:
        return "by_kw needs a reduction above 0 kW"
    if row.ramp_s is None or not 0 <= row.ramp_s <= MAX_RAMP_S:
        return f"ramp_s {row.ramp_s!r} must be within 0-{MAX_RAMP_S:.0f}"
    if as_utc(row.ends_at) <= as_utc(row.starts_at):
        return (
            f"target end {row.ends_at.isoformat()} is not after start {row.starts_at.isoformat()}"
        )
    if as_utc(row.ends_at) - as_utc(row.starts_at) > MAX_WINDOW:
        return f"target window longer than {MAX_WINDOW}"
    if as_utc(row.ends_at) <= now:
        return f"target window already over (ended {as_utc(row.ends_at).isoformat()})"
    return None
