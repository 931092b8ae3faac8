"""Bitaxe AxeOS `GET /api/system/info` (HTTP JSON, not the cgminer API).

hashRate is GH/s; temp is the ASIC temperature, vrTemp the voltage regulator (reported as the
board temperature); power is W; expected hashrate = smallCoreCount x asicCount x frequency (MHz)
/ 1000 GH/s (AxeOS's own formula) unless the firmware reports expectedHashrate.
"""

from __future__ import annotations

from typing import Any

from miners.parsers.base import StatusBuilder, integer, num, positive, text
from miners.status import PoolStatus

ASIC_MODELS = {"BM1397": "Max", "BM1366": "Ultra", "BM1368": "Supra", "BM1370": "Gamma"}


def _pool(url: Any, port: Any, user: Any) -> PoolStatus | None:
    host = text(url)
    if host is None:
        return None
    full = host if "://" in host else f"stratum+tcp://{host}"
    port_no = integer(port)
    return PoolStatus(url=f"{full}:{port_no}" if port_no else full, user=text(user))


def parse_system_info(reply: Any, b: StatusBuilder, command: str = "system_info") -> None:
    """AxeOS system info: identity, hashrate, the one board, fan, power, pools, state."""
    if not isinstance(reply, dict):
        b.error(f"{command}: reply is not an object")
        return
    r = reply
    b.set("make", "Bitaxe")
    with b.guard(command, "model"):
        asic = text(r.get("ASICModel"))
        if asic:
            b.set("model", f"Bitaxe {ASIC_MODELS.get(asic, asic)}")
            b.extra("asic_model", asic)
    b.set("firmware", text(r.get("version")))
    b.set("hostname", text(r.get("hostname")))
    mac = text(r.get("macAddr"))
    b.set("mac", mac.upper() if mac else None)
    with b.guard(command, "hashrate"):
        rate = num(r.get("hashRate"))
        b.set("hashrate_ths", None if rate is None else rate / 1000)
    with b.guard(command, "expected hashrate"):
        expected = positive(num(r.get("expectedHashrate")))
        if expected is None:
            cores, asics, freq = (
                num(r.get("smallCoreCount")),
                num(r.get("asicCount")),
                num(r.get("frequency")),
            )
            if cores and asics and freq:
                expected = cores * asics * freq / 1000
        b.set("expected_hashrate_ths", None if expected is None else round(expected / 1000, 6))
    board = b.board(0)
    with b.guard(command, "board"):
        b.set_board(board, "hashrate_ths", b.status.hashrate_ths)
        b.set_board(board, "chip_temp_c", positive(num(r.get("temp"))))
        b.set_board(board, "temp_c", positive(num(r.get("vrTemp"))))
        b.set_board(board, "chips", integer(r.get("asicCount")))
    with b.guard(command, "fans"):
        rpm = integer(r.get("fanrpm"))
        b.set_list("fans_rpm", [rpm] if rpm is not None else [])
    with b.guard(command, "power"):
        watts = positive(num(r.get("power")))
        if watts is not None:
            b.set("power_w", watts)
            b.set("power_source", "reported")
    with b.guard(command, "uptime"):
        b.set("uptime_s", integer(r.get("uptimeSeconds")))
    with b.guard(command, "pools"):
        primary = _pool(r.get("stratumURL"), r.get("stratumPort"), r.get("stratumUser"))
        fallback = _pool(
            r.get("fallbackStratumURL"), r.get("fallbackStratumPort"), r.get("fallbackStratumUser")
        )
        on_fallback = bool(integer(r.get("isUsingFallbackStratum")))
        active = fallback if on_fallback else primary
        if active is not None:
            active.status = "active"
            active.accepted = integer(r.get("sharesAccepted"))
            active.rejected = integer(r.get("sharesRejected"))
        b.set_list("pools", [p for p in (primary, fallback) if p is not None])
    with b.guard(command, "overheat mode"):
        if integer(r.get("overheat_mode")):
            b.fault("AxeOS overheat mode (hashing stopped until restart)")
    b.extra("wifi_status", text(r.get("wifiStatus")))
