"""Stock Antminer (bmminer/cgminer, also vnish) `stats`: chains, temperatures, fans, chips, power.

Layout: STATS[0] holds Type/Miner/CompileTime; STATS[1] holds the per-chain keys with a slot
suffix (`chain_rate6`, `temp2_6`, `chain_acs6`...). A slot is a board when it has detected chips
(`chain_acn`) or a rate. Rules:
- rates are in `rate_unit` (default GH); Bitmain's scrypt L-series writes MH/s under GHS keys,
  so for `Antminer L*` models the GHS values are read as MH/s;
- board temp = `temp{n}` (PCB), chip temp = `temp2_{n}`, falling back to the max of the
  dash-joined `temp_pcb{n}` / `temp_chip{n}` strings when the scalar is absent or 0;
- chips = count of 'o' in `chain_acs{n}`; expected_chips = all marks (= `chain_acn{n}`);
  'x' (or '-') marks a chip that stopped answering and is reported in errors;
- hashrate = `GHS 5s`, or the sum of chain rates when that reads 0 while chains hash;
- fans: the non-zero `fan{n}` in slot order, padded with 0 rpm up to `fan_num`.
"""

from __future__ import annotations

import re
from typing import Any

from miners.parsers.base import StatusBuilder, integer, num, positive, scaled, text, unit_scale
from miners.parsers.cgminer import parse_version_row, rows_or_none


def _is_scrypt(model: str | None) -> bool:
    return bool(model and re.match(r"Antminer L\d", model))


def _dash_max(value: Any) -> float | None:
    """Max of a dash-joined sensor string like "75-59-88-78" (zeros mean no sensor)."""
    if not isinstance(value, str) or not value.strip():
        return None
    readings = [float(part) for part in value.split("-") if part.strip()]
    return positive(max(readings)) if readings else None


def _quiet_num(value: Any, bad: list[str], key: str) -> float:
    try:
        return num(value) or 0.0
    except ValueError:
        bad.append(f"{key}={value!r}")
        return 0.0


_MIN_SLOTS = 16  # bmminer lists 16 chain and fan slots (most empty); probe past that if present


def _scan(row: dict[str, Any]) -> tuple[list[int], list[int], list[str]]:
    """(board slots, fan rpms padded to fan_num, unreadable keys) by probing slot keys directly:
    a stats row has ~300 keys, and a lookup per slot is far cheaper than scanning them all."""
    slots: list[int] = []
    bad: list[str] = []
    slot = 1
    while slot <= _MIN_SLOTS or f"chain_acn{slot}" in row:
        acn_key = f"chain_acn{slot}"
        rate = row.get(f"chain_rate{slot}")
        if (acn_key in row and _quiet_num(row[acn_key], bad, acn_key) > 0) or (
            rate not in (None, "") and _quiet_num(rate, bad, f"chain_rate{slot}") > 0
        ):
            slots.append(slot)
        slot += 1
    fans: list[int] = []
    slot = 1
    while slot <= _MIN_SLOTS or f"fan{slot}" in row:
        key = f"fan{slot}"
        if key in row:
            rpm = round(_quiet_num(row[key], bad, key))
            if rpm > 0:
                fans.append(rpm)
        slot += 1
    declared = round(_quiet_num(row.get("fan_num"), bad, "fan_num"))
    return slots, fans + [0] * max(0, declared - len(fans)), bad


def _ths(value: float | None, scale: float | None) -> float | None:
    return None if value is None or scale is None else scaled(value, scale)


def _has_chains(row: dict[str, Any]) -> bool:
    return "chain_acn1" in row or any(key.startswith("chain_") for key in row)


def parse_stats(reply: Any, b: StatusBuilder, command: str = "stats") -> None:
    """Antminer `stats`: model, hashrate, expected hashrate, boards, fans, power, uptime."""
    rows = rows_or_none(reply, "STATS", command, b)
    if not rows:
        return
    for row in rows:
        if "Type" in row:
            parse_version_row(row, b, command)
    data = next((row for row in rows if _has_chains(row)), None)
    if data is None:
        b.error(f"{command}: no chain data in STATS")
        return
    b.set("make", "Bitmain")
    model = b.status.model or text(data.get("Type"))
    scale: float | None = None
    scale_label = "MH (scrypt model)" if _is_scrypt(model) else (data.get("rate_unit") or "GH")
    with b.guard(command, "rate_unit"):
        scale = 1e-6 if _is_scrypt(model) else unit_scale(text(data.get("rate_unit")))
    if scale is None:
        scale_label = "unknown: hashrates not converted"

    slots, fans, unreadable = _scan(data)
    for item in unreadable:
        b.error(f"{command}: could not read {item}")
    with b.guard(command, "hashrate"):
        current = num(data.get("GHS 5s"))
        if not current:
            # Some cgminer 4.9 builds leave GHS 5s at "0.00" while every chain reports a rate.
            chain_sum = sum(num(data.get(f"chain_rate{slot}")) or 0.0 for slot in slots)
            current = chain_sum if chain_sum > 0 else current
        b.set("hashrate_ths", _ths(current, scale))
    with b.guard(command, "average hashrate"):
        average = num(data.get("GHS av"))
        b.set("hashrate_avg_ths", _ths(average, scale))
    with b.guard(command, "expected hashrate"):
        ideal = positive(num(data.get("total_rateideal")))
        b.set("expected_hashrate_ths", _ths(ideal, scale))
    with b.guard(command, "uptime"):
        b.set("uptime_s", integer(data.get("Elapsed")))
    with b.guard(command, "fans"):
        b.set_list("fans_rpm", fans)
    b.extra("rate_unit", scale_label)

    power = 0.0
    power_seen = False
    dead_chains: list[str] = []
    hottest: float | None = None
    for slot in slots:
        board = b.board(f"chain{slot}")
        label = f"chain {slot}"
        with b.guard(command, f"{label} hashrate"):
            rate = num(data.get(f"chain_rate{slot}"))
            b.set_board(board, "hashrate_ths", _ths(rate, scale))
        with b.guard(command, f"{label} temperature"):
            b.set_board(board, "temp_c", positive(num(data.get(f"temp{slot}"))))
        if board.temp_c is None:
            with b.guard(command, f"{label} PCB sensors"):
                b.set_board(board, "temp_c", _dash_max(data.get(f"temp_pcb{slot}")))
        with b.guard(command, f"{label} chip temperature"):
            b.set_board(board, "chip_temp_c", positive(num(data.get(f"temp2_{slot}"))))
        if board.chip_temp_c is None:
            with b.guard(command, f"{label} chip sensors"):
                b.set_board(board, "chip_temp_c", _dash_max(data.get(f"temp_chip{slot}")))
        if board.chip_temp_c is not None:
            hottest = max(hottest or board.chip_temp_c, board.chip_temp_c)
        with b.guard(command, f"{label} chips"):
            acn = integer(data.get(f"chain_acn{slot}"))
            marks = str(data.get(f"chain_acs{slot}") or "").replace(" ", "")
            if marks:
                alive = marks.count("o")
                b.set_board(board, "chips", alive)
                b.set_board(board, "expected_chips", len(marks))
                bad = len(marks) - alive
                if bad:
                    b.error(f"{label}: {bad} of {len(marks)} chips not responding ('x')")
                    if alive == 0:
                        dead_chains.append(label)
            else:
                b.set_board(board, "chips", acn)
        with b.guard(command, f"{label} power"):
            watts = positive(num(data.get(f"chain_consumption{slot}")))
            if watts is not None:
                power += watts
                power_seen = True
        state = text(data.get(f"chain_bchips{slot}"))
        if state:
            b.extra(f"chain{slot}_state", state)
    if power_seen:
        b.set("power_w", power)
        b.set("power_source", "reported")
    if dead_chains:
        reason = f"{len(dead_chains)} chain(s) with every chip not responding"
        if hottest is not None:
            reason += f", hottest chip {hottest:g} C"
        b.fault(reason)


def parse_devs(reply: Any, b: StatusBuilder, command: str = "devs") -> None:
    """Stock `devs`: bmminer lists the control board as one pseudo-ASC `BTM_SOC` with zero
    rates; it is not a hashboard, so it is skipped (per-chain data comes from `stats`)."""
    from miners.parsers.cgminer import parse_devs as parse_cgminer_devs

    rows = rows_or_none(reply, "DEVS", command, b)
    if rows is None:
        return
    real = [row for row in rows if not str(row.get("Name", "")).startswith("BTM_SOC")]
    if len(real) < len(rows):
        b.extra("controller_device", "BTM_SOC (aggregate, not a hashboard)")
    if real:
        parse_cgminer_devs({"STATUS": reply.get("STATUS"), "DEVS": real}, b, command)
