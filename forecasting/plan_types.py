"""Data types of a hashing plan: rig groups, constraints, operator windows and the plan itself.

A :class:`HashingPlan` says, for each hour and each rig group, whether the group should hash,
and lists the staggered per-rig curtail/resume actions that get the fleet there. The controller
stores plans and reconciles rigs against :meth:`HashingPlan.desired`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class PlanError(ValueError):
    """A planner input is invalid (empty forecast, bad constraint, overlapping window, ...)."""


@dataclass(frozen=True)
class RigGroup:
    """Rigs of (about) the same efficiency, switched together. ``rigs`` are rig names."""

    name: str
    j_per_th: float
    power_mw: float
    rigs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.j_per_th > 0:
            raise PlanError(f"group {self.name}: J/TH must be > 0, got {self.j_per_th}")
        if not self.power_mw > 0:
            raise PlanError(f"group {self.name}: power must be > 0 MW, got {self.power_mw}")


@dataclass(frozen=True)
class PlanConstraints:
    """How freely the planner may switch rigs.

    * ``min_on_hours`` / ``min_off_hours``: a group stays in a state at least this long;
    * ``switch_cost_usd_per_mw``: cost charged per switch (either way) per MW switched: lost
      hashing while rigs restart, wear, fan and PSU stress;
    * ``max_switches_per_day``: switches per group per local day (in ``timezone``);
    * ``deadband_scale``: a price-vs-break-even difference counts only beyond this share of the
      forecast's spread on the side that would make the decision wrong (0 = no deadband,
      1 = curtail only when p10 is above break-even, resume only when p90 is below it);
    * ``stagger_seconds``: gap between consecutive rig actions so power ramps, not steps.
    """

    min_on_hours: int = 1
    min_off_hours: int = 1
    switch_cost_usd_per_mw: float = 0.0
    max_switches_per_day: int = 8
    deadband_scale: float = 0.0
    stagger_seconds: float = 20.0
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.min_on_hours < 1 or self.min_off_hours < 1:
            raise PlanError("min_on_hours and min_off_hours must be >= 1")
        if self.min_on_hours > 24 or self.min_off_hours > 24:
            raise PlanError("min_on_hours and min_off_hours must be <= 24")
        if self.switch_cost_usd_per_mw < 0:
            raise PlanError("switch_cost_usd_per_mw must be >= 0")
        if not 0 <= self.max_switches_per_day <= 48:
            raise PlanError("max_switches_per_day must be in 0..48")
        if self.deadband_scale < 0:
            raise PlanError("deadband_scale must be >= 0")
        if self.stagger_seconds < 0:
            raise PlanError("stagger_seconds must be >= 0")


class WindowAction(StrEnum):
    """What an operator window demands for its hours."""

    OFF = "off"  # curtail everything (demand response, 4CP peak avoidance)
    ON = "on"  # hash regardless of price (e.g. a hashrate commitment)
    CAP = "cap"  # at most cap_mw of rigs hash; least efficient curtailed first


@dataclass(frozen=True)
class OperatorWindow:
    """A time range the operator decides, overriding economics and min durations."""

    start: datetime
    end: datetime
    action: WindowAction
    cap_mw: float | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise PlanError(f"window {self.reason!r}: start and end must be tz-aware")
        if self.end <= self.start:
            raise PlanError(f"window {self.reason!r}: end {self.end} is not after {self.start}")
        if self.action is WindowAction.CAP and (self.cap_mw is None or self.cap_mw < 0):
            raise PlanError(f"window {self.reason!r}: a cap window needs cap_mw >= 0")


@dataclass(frozen=True)
class GroupState:
    """Where a group stands when a plan starts: hashing or not, for how long, switches today."""

    on: bool = True
    hours_in_state: int = 24
    switches_today: int = 0


class RigActionKind(StrEnum):
    """A rig action the reconcile loop carries out."""

    CURTAIL = "curtail"
    RESUME = "resume"


@dataclass(frozen=True)
class RigAction:
    """One staggered action: this rig (or whole group when ``rig`` is empty) at this instant."""

    at: datetime
    group: str
    rig: str
    kind: RigActionKind


@dataclass(frozen=True)
class PlanHour:
    """One group in one hour: hash or not, and why."""

    start: datetime  # UTC hour start
    group: str
    hashing: bool
    power_mw: float
    price_p10: float
    price_p50: float
    price_p90: float
    break_even: float
    reason: str  # "economics", "hold", or "window:<reason>"


@dataclass(frozen=True)
class HashingPlan:
    """Desired hashing state per group per hour, plus the staggered rig actions."""

    created_at: datetime
    hashprice_usd_per_th_day: float
    constraints: PlanConstraints
    hours: tuple[PlanHour, ...]
    actions: tuple[RigAction, ...] = ()
    groups: tuple[RigGroup, ...] = field(default_factory=tuple)

    def group_schedule(self, group: str) -> list[bool]:
        """The group's hashing flags, hour by hour."""
        return [h.hashing for h in self.hours if h.group == group]

    def desired(self, group: str, at: datetime) -> bool | None:
        """Should ``group`` hash at instant ``at``? None when the plan does not cover it."""
        for hour in self.hours:
            if hour.group == group and hour.start <= at < _plus_hour(hour.start):
                return hour.hashing
        return None

    def hashing_mw(self) -> dict[datetime, float]:
        """Planned hashing power (MW) per hour, summed over groups."""
        out: dict[datetime, float] = {}
        for hour in self.hours:
            out[hour.start] = out.get(hour.start, 0.0) + (hour.power_mw if hour.hashing else 0.0)
        return out


def _plus_hour(t: datetime) -> datetime:
    from datetime import timedelta

    return t + timedelta(hours=1)
