"""Braiins OS (BOSminer) API extensions: fans, temps, tempctrl, tunerstatus; pause/resume acks.

BOSminer numbers boards by hashchain slot (6, 7, 8 on an S9); `devs` ID, `temps` ID and
`tunerstatus` HashchainIndex all use that slot, so they merge onto the same board.
LuxOS answers `fans` and `temps` in the same shape and reuses these functions.
"""

from __future__ import annotations

from typing import Any

from miners.parsers.base import StatusBuilder, integer, num, positive, text
from miners.parsers.cgminer import rows_or_none


def parse_fans(reply: Any, b: StatusBuilder, command: str = "fans") -> None:
    """FANS: rpm of every fan slot as reported (an empty slot reads 0)."""
    rows = rows_or_none(reply, "FANS", command, b)
    if rows is None:
        return
    with b.guard(command, "fans"):
        b.set_list("fans_rpm", [integer(row.get("RPM")) or 0 for row in rows])


def parse_temps(reply: Any, b: StatusBuilder, command: str = "temps") -> None:
    """TEMPS: board and chip temperature per hashchain (0.0 = no sensor)."""
    rows = rows_or_none(reply, "TEMPS", command, b)
    if rows is None:
        return
    for position, row in enumerate(rows):
        board = b.board(row.get("ID", position))
        with b.guard(command, f"board {board.index} temperature"):
            b.set_board(board, "temp_c", positive(num(row.get("Board"))))
        with b.guard(command, f"board {board.index} chip temperature"):
            b.set_board(board, "chip_temp_c", positive(num(row.get("Chip"))))


def parse_tempctrl(reply: Any, b: StatusBuilder, command: str = "tempctrl") -> None:
    """TEMPCTRL: fan-control mode and target/hot/dangerous thresholds (extras only)."""
    rows = rows_or_none(reply, "TEMPCTRL", command, b)
    if not rows:
        return
    row = rows[0]
    b.extra("tempctrl_mode", text(row.get("Mode")))
    for key, name in (("Target", "temp_target_c"), ("Hot", "temp_hot_c")):
        with b.guard(command, name):
            b.extra(name, num(row.get(key)))
    with b.guard(command, "temp_dangerous_c"):
        b.extra("temp_dangerous_c", num(row.get("Dangerous")))


def parse_tunerstatus(reply: Any, b: StatusBuilder, command: str = "tunerstatus") -> None:
    """TUNERSTATUS: estimated power draw, power limit, per-chain tuner state."""
    rows = rows_or_none(reply, "TUNERSTATUS", command, b)
    if not rows:
        return
    row = rows[0]
    with b.guard(command, "power"):
        watts = positive(num(row.get("ApproximateMinerPowerConsumption")))
        if watts is not None:
            b.set("power_w", watts)
            b.set("power_source", "reported")
    with b.guard(command, "power limit"):
        b.extra("power_limit_w", num(row.get("PowerLimit")))
    b.extra("dynamic_power_scaling", text(row.get("DynamicPowerScaling")))
    chains = row.get("TunerChainStatus")
    if isinstance(chains, list):
        # Extras only: a tuner entry alone says nothing about a board's hashrate or health.
        for position, chain in enumerate(c for c in chains if isinstance(c, dict)):
            b.extra(f"board{position}_tuner", text(chain.get("Status")))
            with b.guard(command, f"board {position} power"):
                b.extra(
                    f"board{position}_power_w", num(chain.get("ApproximatePowerConsumptionWatt"))
                )
