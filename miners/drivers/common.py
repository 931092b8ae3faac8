"""Reading the fields every cgminer-style reply shares: hashrate keys, pools, STATUS, uptime."""

from __future__ import annotations

from typing import Any

from miners.drivers.base import num
from miners.status import PoolStatus

# Overheat line: stock firmwares stop hashing in the high 80s / 90s C on the chips.
OVERHEAT_C = 85.0


def hashrate_ths(entry: dict[str, Any], window: str = "5s") -> float | None:
    """TH/s from `GHS 5s` / `MHS 5s` style keys (whichever unit the firmware uses)."""
    for key, scale in ((f"GHS {window}", 1e-3), (f"MHS {window}", 1e-6), (f"THS {window}", 1.0)):
        val = num(entry.get(key))
        if val is not None:
            return round(val * scale, 3)
    return None


def pools(reply: dict[str, Any] | None) -> list[PoolStatus]:
    """The POOLS section as PoolStatus, active pool first."""
    if not reply:
        return []
    items = reply.get("POOLS")
    if not isinstance(items, list):
        return []
    out = []
    ordered = sorted(
        (p for p in items if isinstance(p, dict)),
        key=lambda p: (not p.get("Stratum Active", False), p.get("Priority", 0)),
    )
    for p in ordered:
        out.append(
            PoolStatus(
                url=p.get("URL"),
                user=p.get("User"),
                status=p.get("Status"),
                accepted=_int(p.get("Accepted")),
                rejected=_int(p.get("Rejected")),
            )
        )
    return out


def _int(value: Any) -> int | None:
    v = num(value)
    return int(v) if v is not None else None


def description(reply: dict[str, Any]) -> str:
    """The `Description` of the STATUS block ("cgminer 1.0.0", "BOSminer+ 0.2.0-...")."""
    status = reply.get("STATUS")
    if isinstance(status, list) and status and isinstance(status[0], dict):
        return str(status[0].get("Description", ""))
    if isinstance(reply.get("Description"), str):
        return str(reply["Description"])
    return ""


def efficiency(power_w: float | None, ths: float | None) -> float | None:
    """J/TH when both power and a non-zero hashrate are known."""
    if power_w is None or not ths:
        return None
    return round(power_w / ths, 2)
