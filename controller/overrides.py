"""Operator overrides: a rig, rack or site forced to hash or stay curtailed for a window.

They come from the CLI (`farmctl override ...`) or MQTT commands and win over the plan for their
window (controller/reconcile.py). Targets are checked against the config so a typo is refused,
not silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controller.clock import hour_floor
from controller.config import FarmConfig
from controller.tables import Override

TargetKind = Literal["rig", "rack", "site"]
MAX_WINDOW = timedelta(days=7)


class OverrideError(ValueError):
    """An override that cannot be applied (unknown target, empty or too long window)."""


@dataclass(frozen=True, slots=True)
class OverrideView:
    """An override as shown to the operator."""

    id: int
    target_kind: str
    target: str
    desired: str
    starts_at: datetime
    ends_at: datetime
    source: str
    reason: str
    cancelled: bool


def check_target(config: FarmConfig, kind: TargetKind, target: str) -> None:
    """Refuse a target the config does not know."""
    known = {
        "rig": {r.name for r in config.rigs},
        "rack": {rack.id for s in config.sites for rack in s.racks},
        "site": {s.id for s in config.sites},
    }[kind]
    if target not in known:
        raise OverrideError(f"unknown {kind} {target!r}; known: {sorted(known)}")
    if kind == "rack":
        # an override row names a rack by id only: it would act at every site with that id
        sites = sorted(s.id for s in config.sites for rack in s.racks if rack.id == target)
        if len(sites) > 1:
            raise OverrideError(
                f"rack {target!r} exists at sites {', '.join(sites)}; target its rigs instead"
            )


def add_override(
    sessions: sessionmaker[Session],
    config: FarmConfig,
    kind: TargetKind,
    target: str,
    desired: Literal["hashing", "curtailed"],
    start: datetime,
    end: datetime,
    *,
    source: str,
    reason: str = "",
    now: datetime,
) -> int:
    """Store an override and return its id."""
    check_target(config, kind, target)
    if start.tzinfo is None or end.tzinfo is None:
        raise OverrideError("override start and end must carry a time zone")
    if end <= start:
        raise OverrideError(
            f"override ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    if end - start > MAX_WINDOW:
        raise OverrideError(f"override window {end - start} is longer than {MAX_WINDOW}")
    with sessions.begin() as session:
        row = Override(
            target_kind=kind,
            target=target,
            desired=desired,
            starts_at=start,
            ends_at=end,
            source=source,
            reason=reason[:255],
            created_at=now,
            cancelled=False,
        )
        session.add(row)
        session.flush()
        return int(row.id)


def until_next_hour(now: datetime) -> datetime:
    """End of the current plan hour: a one-shot curtail/resume lasts until the plan takes over."""
    return hour_floor(now) + timedelta(hours=1)


def cancel_override(sessions: sessionmaker[Session], override_id: int) -> bool:
    """Cancel an override; False when no such override exists."""
    with sessions.begin() as session:
        row = session.get(Override, override_id)
        if row is None:
            return False
        row.cancelled = True
        return True


def list_overrides(
    sessions: sessionmaker[Session], now: datetime, include_past: bool = False
) -> list[OverrideView]:
    """Overrides that are active or still to come (all of them with `include_past`)."""
    query = select(Override).order_by(Override.starts_at)
    if not include_past:
        query = query.where(Override.ends_at > now, Override.cancelled.is_(False))
    with sessions() as session:
        return [
            OverrideView(
                o.id,
                o.target_kind,
                o.target,
                o.desired,
                o.starts_at,
                o.ends_at,
                o.source,
                o.reason,
                o.cancelled,
            )
            for o in session.scalars(query)
        ]
