"""Canaan Avalon `stats`/`estats`: the `MM ID<n>` bracket string, e.g. `Ver[1047-...] Temp[28]`.

Keys used: Ver (model number + firmware), DNA (serial), GHSmm or GHSspd / GHSavg (GH/s now/avg),
MGHS (GH/s per board), MTmax/MTavg (max/avg chip temp per board), Temp (intake), Fan<n>,
PVT_T<n> (one entry per chip on board n), WALLPOWER or PS[...] index 4 (W, 0 = unknown),
MPO (power limit), SYSTEMSTATU (work state: "In Idle" after a soft-off is curtailed).
"""

from __future__ import annotations

import re
from typing import Any

from miners.parsers.base import StatusBuilder, integer, num, positive, scaled, text
from miners.parsers.cgminer import rows_or_none

_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\[([^\]]*)\]")
# "MM ID0" (A10xx/A11xx) or "MM ID0:Summary" (newer firmware's estats)
_MM_KEY = re.compile(r"^MM ID(\d+)(?::Summary)?$")


def parse_mm_string(raw: str) -> dict[str, str]:
    """`Ver[1047-x] Temp[18] PS[0 1 2]` -> {"Ver": "1047-x", "Temp": "18", "PS": "0 1 2"}."""
    return {key: value.strip() for key, value in _FIELD.findall(raw)}


def _numbers(value: str | None) -> list[float]:
    if not value:
        return []
    return [float(part) for part in value.split() if part.strip()]


def _module_rows(reply: Any, b: StatusBuilder, command: str) -> list[dict[str, str]]:
    rows = rows_or_none(reply, "STATS", command, b)
    modules: list[tuple[int, dict[str, str]]] = []
    for row in rows or []:
        for key, value in row.items():
            match = _MM_KEY.match(key)
            if match and isinstance(value, str):
                modules.append((int(match.group(1)), parse_mm_string(value)))
    return [mm for _, mm in sorted(modules, key=lambda item: item[0])]


def parse_stats(reply: Any, b: StatusBuilder, command: str = "stats") -> None:
    """Avalon stats/estats: model, serial, hashrate, boards, fans, temps, power, work state."""
    modules = _module_rows(reply, b, command)
    if not modules:
        if not any("MM ID" in e for e in b.status.errors):
            b.error(f"{command}: no 'MM ID' module string in STATS")
        return
    b.set("make", "Canaan")
    with b.guard(command, "uptime"):
        rows = rows_or_none(reply, "STATS", command, b) or []
        b.set("uptime_s", next((integer(r["Elapsed"]) for r in rows if "Elapsed" in r), None))
    now = avg = 0.0
    now_seen = avg_seen = False
    fans: list[int] = []
    power = 0.0
    power_seen = False
    for module_no, mm in enumerate(modules):
        with b.guard(command, "model"):
            version = mm.get("Ver")
            if version:
                b.set("model", f"Avalon {version.split('-', 1)[0]}")
                b.set("firmware", version)
        b.set("serial", text(mm.get("DNA")))
        with b.guard(command, "hashrate"):
            value = num(mm.get("GHSmm", mm.get("GHSspd")))  # GHSspd on newer firmware
            if value is not None:
                now += value / 1000
                now_seen = True
        with b.guard(command, "average hashrate"):
            value = num(mm.get("GHSavg"))
            if value is not None:
                avg += value / 1000
                avg_seen = True
        with b.guard(command, "fans"):
            fan_keys = sorted(
                (int(k[3:]), k) for k in mm if k.startswith("Fan") and k[3:].isdigit()
            )
            fans.extend(integer(mm[k]) or 0 for _, k in fan_keys)
        with b.guard(command, "power"):
            watts = positive(num(mm.get("WALLPOWER")))
            if watts is None:
                supply = _numbers(mm.get("PS"))
                watts = positive(supply[4]) if len(supply) > 4 else None
            if watts is not None:
                power += watts
                power_seen = True
        with b.guard(command, "power limit"):
            b.extra("power_limit_w", num(mm.get("MPO")))
        with b.guard(command, "intake temperature"):
            b.extra("env_temp_c", positive(num(mm.get("Temp"))))
        _boards(mm, module_no, b, command)
        work = mm.get("SYSTEMSTATU", "")
        if work:
            b.extra("work_state", work)
            if "idle" in work.lower():
                b.curtailed(f"Avalon work state '{work}' (soft-off/idle)")
    if now_seen:
        b.set("hashrate_ths", round(now, 6))
    if avg_seen:
        b.set("hashrate_avg_ths", round(avg, 6))
    b.set_list("fans_rpm", fans)
    if power_seen:
        b.set("power_w", power)
        b.set("power_source", "reported")


def _boards(mm: dict[str, str], module_no: int, b: StatusBuilder, command: str) -> None:
    rates = _numbers(mm.get("MGHS"))
    count = len(rates) or len([k for k in mm if k.startswith("PVT_T")])
    tmax = _numbers(mm.get("MTmax"))
    tavg = _numbers(mm.get("MTavg"))
    for idx in range(count):
        board = b.board(f"mm{module_no}-{idx}")
        label = f"board {board.index}"
        with b.guard(command, f"{label} hashrate"):
            b.set_board(
                board, "hashrate_ths", scaled(rates[idx], 1e-3) if idx < len(rates) else None
            )
        with b.guard(command, f"{label} temperature"):
            b.set_board(board, "temp_c", positive(tavg[idx]) if idx < len(tavg) else None)
        with b.guard(command, f"{label} chip temperature"):
            b.set_board(board, "chip_temp_c", positive(tmax[idx]) if idx < len(tmax) else None)
        with b.guard(command, f"{label} chips"):
            sensors = _numbers(mm.get(f"PVT_T{idx}"))
            b.set_board(board, "chips", len(sensors) or None)
