"""The one normalized status every rig becomes, whatever its firmware or transport."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

RigState = Literal["hashing", "curtailed", "idle", "offline", "error"]
PowerSource = Literal["meter", "reported", "nameplate"]
RIG_STATES: tuple[RigState, ...] = ("hashing", "curtailed", "idle", "offline", "error")


@dataclass(slots=True)
class BoardStatus:
    """One hashboard (chain) of a rig."""

    index: int
    hashrate_ths: float | None = None
    temp_c: float | None = None
    chip_temp_c: float | None = None
    chips: int | None = None
    expected_chips: int | None = None


@dataclass(slots=True)
class PoolStatus:
    """One configured pool as the rig reports it."""

    url: str | None = None
    user: str | None = None
    status: str | None = None
    accepted: int | None = None
    rejected: int | None = None


@dataclass(slots=True)
class RigStatus:
    """Normalized status of one rig. A field that could not be read is None, never an error."""

    ip: str | None = None
    port: int | None = None
    mac: str | None = None
    serial: str | None = None
    hostname: str | None = None
    family: str | None = None
    make: str | None = None
    model: str | None = None
    firmware: str | None = None
    state: RigState = "offline"
    state_reason: str | None = None
    hashrate_ths: float | None = None
    hashrate_avg_ths: float | None = None
    expected_hashrate_ths: float | None = None
    boards: list[BoardStatus] = field(default_factory=list)
    fans_rpm: list[int] = field(default_factory=list)
    power_w: float | None = None
    power_source: PowerSource | None = None
    efficiency_jth: float | None = None
    pools: list[PoolStatus] = field(default_factory=list)
    uptime_s: int | None = None
    errors: list[str] = field(default_factory=list)
    last_seen: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the documented JSON keys (datetimes as ISO 8601 strings)."""
        out = dataclasses.asdict(self)
        out["last_seen"] = self.last_seen.isoformat() if self.last_seen else None
        return out
