"""Generic cgminer API replies: summary, devs/edevs, pools, version, devdetails, stats, acks."""

from __future__ import annotations

from typing import Any

from miners.parsers.base import (
    AVERAGE_WINDOWS,
    CURRENT_WINDOWS,
    StatusBuilder,
    hashrate_ths,
    integer,
    num,
    pool_from_row,
    positive,
    reply_status,
    scaled,
    section,
    text,
)


def rows_or_none(
    reply: Any, key: str, command: str, b: StatusBuilder
) -> list[dict[str, Any]] | None:
    """The rows under `key`, or None after recording why (STATUS E, missing section)."""
    status = reply_status(reply)
    if status is not None and str(status.get("STATUS", "")).upper() in ("E", "F"):
        b.error(
            f"{command}: rig answered STATUS {status.get('STATUS')} "
            f"Code {status.get('Code')}: {status.get('Msg')}"
        )
        return None
    try:
        return section(reply, key)
    except ValueError as exc:
        b.error(f"{command}: {exc}")
        return None


def parse_summary(reply: Any, b: StatusBuilder, command: str = "summary") -> None:
    """SUMMARY: current and average hashrate (any unit), uptime (Elapsed)."""
    rows = rows_or_none(reply, "SUMMARY", command, b)
    if not rows:
        return
    row = rows[0]
    with b.guard(command, "hashrate"):
        b.set("hashrate_ths", hashrate_ths(row, CURRENT_WINDOWS))
    with b.guard(command, "average hashrate"):
        b.set("hashrate_avg_ths", hashrate_ths(row, AVERAGE_WINDOWS))
    with b.guard(command, "uptime"):
        b.set("uptime_s", integer(row.get("Elapsed")))


def _device_key(row: dict[str, Any], position: int) -> Any:
    for key in ("ID", "ASC", "PGA", "GPU"):
        if key in row:
            return row[key]
    return position


def parse_devs(reply: Any, b: StatusBuilder, command: str = "devs") -> None:
    """DEVS (or edevs): one board per device with hashrate, temperature, chips, chip temps."""
    rows = rows_or_none(reply, "DEVS", command, b)
    if rows is None:
        return
    for position, row in enumerate(rows):
        board = b.board(_device_key(row, position))
        label = f"board {board.index}"
        with b.guard(command, f"{label} hashrate"):
            b.set_board(board, "hashrate_ths", hashrate_ths(row, CURRENT_WINDOWS))
        with b.guard(command, f"{label} temperature"):
            # "Tenperature" is how stock bmminer spells it.
            raw = row.get("Temperature", row.get("Tenperature"))
            b.set_board(board, "temp_c", positive(num(raw)))
        with b.guard(command, f"{label} chip temperature"):
            b.set_board(board, "chip_temp_c", positive(num(row.get("Chip Temp Max"))))
        with b.guard(command, f"{label} chips"):
            b.set_board(board, "chips", integer(row.get("Effective Chips")))
        with b.guard(command, f"{label} expected hashrate"):
            nominal = _nominal(row)
            if nominal is not None:
                b.extra(f"board{board.index}_nominal_ths", round(nominal, 6))
        status = text(row.get("Status"))
        if status and status.lower() not in ("alive",):
            b.error(f"{command}: {label} status {status}")
        enabled = text(row.get("Enabled"))
        if enabled and enabled.upper() == "N":
            b.error(f"{command}: {label} disabled")
    _sum_expected(b)


def _nominal(row: dict[str, Any]) -> float | None:
    value = num(row.get("Nominal MHS"))
    return None if value is None else scaled(value, 1e-6)


def _sum_expected(b: StatusBuilder) -> None:
    """Rig expected hashrate as the sum of per-board nominal rates when every board has one."""
    nominals = [b.extras.get(f"board{board.index}_nominal_ths") for board in b.status.boards]
    if nominals and all(value is not None for value in nominals):
        b.set("expected_hashrate_ths", round(sum(v for v in nominals if v is not None), 6))


def parse_pools(reply: Any, b: StatusBuilder, command: str = "pools") -> None:
    """POOLS: url, user, status (lower-cased), accepted, rejected."""
    rows = rows_or_none(reply, "POOLS", command, b)
    if rows is None:
        return
    pools = []
    for position, row in enumerate(rows):
        with b.guard(command, f"pool {position}"):
            pools.append(pool_from_row(row))
    b.set_list("pools", pools)


_FIRMWARE_KEYS = ("BOSminer+", "BOSminer", "LUXminer", "Miner", "CGVERSION", "LVERSION")
_DAEMON_KEYS = ("BMMiner", "CGMiner", "Cgminer", "cgminer", "BTMiner", "GCMiner")


def parse_version_row(row: dict[str, Any], b: StatusBuilder, command: str) -> None:
    """Model from Type/PROD/MODEL, firmware from the firmware key, MAC and DNA when given."""
    with b.guard(command, "model"):
        model = text(row.get("Type")) or text(row.get("PROD")) or text(row.get("Model"))
        if model:
            model, _, variant = model.partition(" (")
            b.set("model", model.strip())
            if variant:
                b.set("firmware", variant.rstrip(")").strip())
    with b.guard(command, "firmware"):
        for key in _FIRMWARE_KEYS:
            value = text(row.get(key))
            if value:
                b.set("firmware", f"{key} {value}" if key.startswith(("BOS", "LUX")) else value)
                break
        else:
            for key in _DAEMON_KEYS:
                value = text(row.get(key))
                if value:
                    b.set("firmware", f"{key} {value}")
                    break
    with b.guard(command, "mac"):
        mac = text(row.get("MAC"))
        b.set("mac", mac.upper() if mac else None)
    with b.guard(command, "serial"):
        b.set("serial", text(row.get("DNA")) or text(row.get("SN")))


def parse_version(reply: Any, b: StatusBuilder, command: str = "version") -> None:
    """VERSION: model, firmware, identity."""
    rows = rows_or_none(reply, "VERSION", command, b)
    if rows:
        parse_version_row(rows[0], b, command)


def parse_devdetails(reply: Any, b: StatusBuilder, command: str = "devdetails") -> None:
    """DEVDETAILS: model and chips per board where the firmware lists them."""
    rows = rows_or_none(reply, "DEVDETAILS", command, b)
    if rows is None:
        return
    for position, row in enumerate(rows):
        with b.guard(command, "model"):
            b.set("model", text(row.get("Model")))
        board = b.board(_device_key(row, position))
        with b.guard(command, f"board {board.index} chips"):
            b.set_board(board, "expected_chips", integer(row.get("Chips")))


def parse_stats(reply: Any, b: StatusBuilder, command: str = "stats") -> None:
    """STATS of an unknown cgminer rig: recognise the Antminer and Avalon layouts by their keys."""
    from miners.parsers import antminer, avalon

    rows = rows_or_none(reply, "STATS", command, b)
    if not rows:
        return
    if any("MM ID0" in row for row in rows):
        avalon.parse_stats(reply, b, command)
    elif any(any(key.startswith("chain_") for key in row) for row in rows):
        antminer.parse_stats(reply, b, command)
    else:
        for row in rows:
            if "Type" in row:
                parse_version_row(row, b, command)


ACTION_CURTAIL = frozenset({"pause", "sleep", "softoff", "power_off"})


def parse_ack(reply: Any, b: StatusBuilder, command: str) -> None:
    """An action reply (pause, resume, ascset, ...): record it; a curtail ack sets the state."""
    status = reply_status(reply) or {}
    flag = str(status.get("STATUS", "")).upper()
    msg = text(status.get("Msg"))
    b.extra(
        "ack", {"command": command, "status": flag or None, "code": status.get("Code"), "msg": msg}
    )
    if flag in ("E", "F"):
        b.error(f"{command}: rig refused: Code {status.get('Code')}: {msg}")
        return
    base = command.split("|")[0].lower()
    lowered = (msg or "").lower()
    if base in ACTION_CURTAIL or "softoff" in lowered or lowered.startswith("pause"):
        b.curtailed(f"{command} acknowledged: {msg}")
