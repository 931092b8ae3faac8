"""State rules for replies no family parser covers (Whatsminer API v3): overheat, curtail, idle."""

from __future__ import annotations

from miners.status import BoardStatus, RigStatus

# Overheat lines: stock firmwares protect at ~85-90 C on the board sensors; chips run hotter
# (a healthy Whatsminer shows 93 C chip max), so they get their own, higher line.
OVERHEAT_C = 85.0
OVERHEAT_CHIP_C = 100.0


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
