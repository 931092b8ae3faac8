"""Reading the fields every cgminer-style reply shares: hashrate keys, pools, STATUS, uptime."""

from __future__ import annotations

from typing import Any

from miners.drivers.base import num
from miners.status import BoardStatus, PoolStatus, RigStatus

# Overheat lines: stock firmwares protect at ~85-90 C on the board sensors; chips run hotter
# (a healthy Whatsminer shows 93 C chip max), so they get their own, higher line.
OVERHEAT_C = 85.0
OVERHEAT_CHIP_C = 100.0


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


def overheat_temp(boards: list[BoardStatus]) -> float | None:
    """The temperature that crosses an overheat line (board or chip), None when none does."""
    for b in boards:
        if b.temp_c is not None and b.temp_c >= OVERHEAT_C:
            return b.temp_c
        if b.chip_temp_c is not None and b.chip_temp_c >= OVERHEAT_CHIP_C:
            return b.chip_temp_c
    return None


def finish_state(
    st: RigStatus, *, curtailed: bool, expected_boards: int | None = None
) -> RigStatus:
    """Set state, state_reason and errors from what was read (overheat wins, then curtail flag)."""
    hottest = overheat_temp(st.boards)
    if expected_boards and len(st.boards) < expected_boards:
        st.errors.append(
            f"{expected_boards - len(st.boards)} of {expected_boards} hashboards missing"
        )
    for b in st.boards:
        if b.expected_chips and (b.chips or 0) == 0:
            st.errors.append(f"board {b.index}: no ASICs detected (0/{b.expected_chips} chips)")
    if hottest is not None:
        st.errors.append(f"overheating: temperature {hottest:.0f} C")
        st.state, st.state_reason = "error", st.errors[-1]
    elif curtailed:
        st.state, st.state_reason = "curtailed", st.state_reason or "curtailed by command"
    elif (st.hashrate_ths or 0) > 0:
        st.state = "hashing"
        dead = [i for i, rpm in enumerate(st.fans_rpm) if rpm == 0]
        if dead:
            st.errors.append(f"fan {dead[0]} at 0 rpm")
    else:
        st.state, st.state_reason = "idle", "hashrate 0"
    st.efficiency_jth = efficiency(st.power_w, st.hashrate_ths)
    return st
