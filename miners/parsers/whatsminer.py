"""Whatsminer btminer: summary (power, fans, MAC, error codes), edevs, get_version, get_miner_info.

btminer's `summary` carries far more than cgminer's: Power (W), fan speeds, MAC, firmware,
`Factory GHS`, and up to N `Error Code n` / `Factory Error Code n` entries decoded below.
The API v2 commands (`get_version`, `get_miner_info`) put STATUS/Code/Msg at the top level,
with Msg an object.
"""

from __future__ import annotations

from typing import Any

from miners.parsers.base import StatusBuilder, integer, num, positive, reply_status, text
from miners.parsers.cgminer import parse_summary as parse_cgminer_summary

# MicroBT's published error code list (Whatsminer "Error Code Table"); the code's leading
# digits give the subsystem, the specific codes the fault.
ERROR_CODES: dict[int, str] = {
    100: "fan speed reading failed",
    110: "intake fan speed error",
    111: "exhaust fan speed error",
    120: "intake fan speed error, deviates by more than 2000 rpm",
    121: "exhaust fan speed error, deviates by more than 2000 rpm",
    130: "intake fan speed error, deviates by more than 3000 rpm",
    131: "exhaust fan speed error, deviates by more than 3000 rpm",
    140: "fan speed too high",
    200: "power probing error, no power supply found",
    201: "power supply and configuration file do not match",
    202: "power output voltage error",
    203: "power protecting due to high environment temperature",
    204: "power current protecting due to high environment temperature",
    205: "power current error",
    206: "power input low voltage error",
    207: "power input current protecting due to bad power input",
    208: "power supply error",
    209: "power voltage offset error",
    210: "power error",
    211: "power output current error, reboot needed",
    213: "power input voltage and current do not match power output",
    216: "power supply output unchanged for a long time",
    218: "power input voltage below 230 V for high power mode",
    233: "power output over-temperature protection",
    239: "power output over-voltage protection",
    240: "power output under-voltage protection",
    241: "power output current imbalance",
    243: "power input over-temperature protection",
    246: "power input over-voltage protection",
    248: "power input over-current protection",
    250: "power input under-voltage protection",
    253: "power supply fan error",
    255: "power output over-power protection",
    264: "power supply communication error",
    267: "power supply watchdog protection",
    300: "slot 0 temperature sensor detection error",
    301: "slot 1 temperature sensor detection error",
    302: "slot 2 temperature sensor detection error",
    320: "slot 0 temperature reading error",
    321: "slot 1 temperature reading error",
    322: "slot 2 temperature reading error",
    329: "control board temperature sensor communication error",
    350: "slot 0 temperature protecting",
    351: "slot 1 temperature protecting",
    352: "slot 2 temperature protecting",
    360: "hashboard high temperature",
    370: "environment temperature fluctuates too much",
    410: "slot 0 EEPROM detection error",
    411: "slot 1 EEPROM detection error",
    412: "slot 2 EEPROM detection error",
    420: "slot 0 EEPROM parsing error",
    421: "slot 1 EEPROM parsing error",
    422: "slot 2 EEPROM parsing error",
    510: "slot 0 miner type error",
    511: "slot 1 miner type error",
    512: "slot 2 miner type error",
    530: "slot 0 not found",
    531: "slot 1 not found",
    532: "slot 2 not found",
    540: "slot 0 error reading chip id",
    541: "slot 1 error reading chip id",
    542: "slot 2 error reading chip id",
    550: "slot 0 has bad chips",
    551: "slot 1 has bad chips",
    552: "slot 2 has bad chips",
    560: "slot 0 loss of balance",
    561: "slot 1 loss of balance",
    562: "slot 2 loss of balance",
    600: "environment temperature too high",
    610: "environment temperature too high for high performance mode",
    701: "control board has no support chip",
    710: "control board rebooted as an exception",
    712: "control board rebooted as an exception",
    800: "cgminer checksum error",
    801: "system monitor checksum error",
    802: "remote daemon checksum error",
    2000: "no pool configured",
    2010: "all pools are disabled",
    2020: "pool 0 connection failed",
    2021: "pool 1 connection failed",
    2022: "pool 2 connection failed",
    2030: "high rejection rate on pool",
    2040: "the pool does not support asicboost mode",
    2310: "hashrate is too low",
    2320: "hashrate is too low",
    2330: "hashrate loss is too high",
    2340: "hashrate loss is too high",
    2350: "hashrate loss",
}

_SUBSYSTEMS: dict[int, str] = {
    1: "fan",
    2: "power supply",
    3: "temperature",
    4: "EEPROM",
    5: "hashboard",
    6: "environment temperature",
    7: "control board",
    8: "checksum",
    20: "pool",
    23: "hashrate",
}


def describe_error(code: int) -> str:
    """Readable text for a Whatsminer error code, e.g. 110 -> 'intake fan speed error'."""
    known = ERROR_CODES.get(code)
    if known is not None:
        return known
    subsystem = _SUBSYSTEMS.get(code // 100) or _SUBSYSTEMS.get(code // 1000)
    return f"{subsystem} error" if subsystem else "unknown error"


def _indexed_codes(row: dict[str, Any], prefix: str) -> list[int]:
    codes: list[tuple[int, int]] = []
    for key, value in row.items():
        if key.startswith(prefix) and key[len(prefix) :].strip().isdigit():
            code = integer(value)
            if code is not None:
                codes.append((int(key[len(prefix) :]), code))
    return [code for _, code in sorted(codes)]


def parse_summary(reply: Any, b: StatusBuilder, command: str = "summary") -> None:
    """btminer summary: cgminer fields plus power, fans, identity, expected rate, error codes."""
    parse_cgminer_summary(reply, b, command)
    rows = _rows_quiet(reply)  # parse_cgminer_summary already recorded why it is missing
    if not rows:
        return
    row = rows[0]
    b.set("make", "MicroBT")
    with b.guard(command, "power"):
        watts = positive(num(row.get("Power"))) or positive(num(row.get("Power_RT")))
        if watts is not None:
            b.set("power_w", watts)
            b.set("power_source", "reported")
    with b.guard(command, "efficiency"):
        b.set("efficiency_jth", positive(num(row.get("Power Rate"))))
    with b.guard(command, "fans"):
        fans = [integer(row.get(key)) for key in ("Fan Speed In", "Fan Speed Out") if key in row]
        b.set_list("fans_rpm", [rpm or 0 for rpm in fans])
    with b.guard(command, "mac"):
        mac = text(row.get("MAC"))
        b.set("mac", mac.upper() if mac else None)
    with b.guard(command, "firmware"):
        # btminer wraps the version in single quotes: "'20201202.22.REL'"
        b.set("firmware", text(str(row.get("Firmware Version") or "").strip("'")))
    with b.guard(command, "expected hashrate"):
        factory = positive(num(row.get("Factory GHS")))
        b.set("expected_hashrate_ths", None if factory is None else factory / 1000)
    with b.guard(command, "power limit"):
        b.extra("power_limit_w", num(row.get("Power Limit")))
    b.extra("power_mode", text(row.get("Power Mode")))
    with b.guard(command, "environment temperature"):
        b.extra("env_temp_c", num(row.get("Env Temp")))
    with b.guard(command, "error codes"):
        for code in _indexed_codes(row, "Error Code "):
            b.error(f"error {code}: {describe_error(code)}")
        for code in _indexed_codes(row, "Factory Error Code "):
            b.error(f"factory test code {code}: {describe_error(code)}")


def _rows_quiet(reply: Any) -> list[dict[str, Any]] | None:
    rows = reply.get("SUMMARY") if isinstance(reply, dict) else None
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else None


def _msg(reply: Any, command: str, b: StatusBuilder) -> dict[str, Any] | None:
    status = reply_status(reply)
    if status is None:
        b.error(f"{command}: no STATUS in reply")
        return None
    if str(status.get("STATUS", "")).upper() in ("E", "F"):
        b.error(f"{command}: rig answered STATUS E Code {status.get('Code')}: {status.get('Msg')}")
        return None
    msg = status.get("Msg")
    if not isinstance(msg, dict):
        b.error(f"{command}: Msg is not an object")
        return None
    return msg


def parse_get_version(reply: Any, b: StatusBuilder, command: str = "get_version") -> None:
    """API v2 get_version: firmware version, API version, control board platform."""
    msg = _msg(reply, command, b)
    if msg is None:
        return
    b.set("make", "MicroBT")
    b.set("firmware", text(msg.get("fw_ver")))
    b.extra("api_version", text(msg.get("api_ver")))
    b.extra("control_board", text(msg.get("platform")))


def parse_get_miner_info(reply: Any, b: StatusBuilder, command: str = "get_miner_info") -> None:
    """API v2 get_miner_info: hostname and MAC."""
    msg = _msg(reply, command, b)
    if msg is None:
        return
    b.set("make", "MicroBT")
    b.set("hostname", text(msg.get("hostname")))
    mac = text(msg.get("mac"))
    b.set("mac", mac.upper() if mac else None)
    b.extra("led", text(msg.get("ledstat")))


def parse_get_error_code(reply: Any, b: StatusBuilder, command: str = "get_error_code") -> None:
    """API v2 get_error_code: `Msg.error_code` as a list of {code: time} (or one object)."""
    msg = _msg(reply, command, b)
    if msg is None:
        return
    entries = msg.get("error_code")
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        b.error(f"{command}: no error_code list in Msg")
        return
    b.touched.add("errors")
    for entry in entries:
        items = entry.items() if isinstance(entry, dict) else [(entry, None)]
        for raw_code, when in items:
            with b.guard(command, f"error code {raw_code!r}"):
                code = int(str(raw_code).strip())
                suffix = f" (since {when})" if when else ""
                b.error(f"error {code}: {describe_error(code)}{suffix}")
