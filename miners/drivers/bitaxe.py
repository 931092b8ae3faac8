"""Bitaxe on AxeOS, over HTTP: status from GET /api/system/info, restart, settings by PATCH.

AxeOS has no sleep or power-limit API, so CURTAIL, RESUME and POWER_TARGET are absent and asked
for they are refused. Frequency and core voltage are settings (`apply_settings`), read back from
/api/system/info.
"""

from __future__ import annotations

from typing import Any, ClassVar

from miners.credentials import RigCredentials
from miners.driver import Capability, RigActionNotVerified
from miners.drivers.base import BaseDriver, DriverTimeouts, num
from miners.drivers.common import finish_state
from miners.drivers.http import HttpClient
from miners.status import BoardStatus, PoolStatus, RigStatus

ASIC_MODELS = {
    "BM1397": "Bitaxe Max",
    "BM1366": "Bitaxe Ultra",
    "BM1368": "Bitaxe Supra",
    "BM1370": "Bitaxe Gamma",
}


def parse_axeos(info: dict[str, Any]) -> RigStatus:
    """RigStatus from /api/system/info (hashRate is GH/s, power W, temp C)."""
    ghs = num(info.get("hashRate"))
    st = RigStatus(
        make="Bitaxe",
        model=ASIC_MODELS.get(str(info.get("ASICModel")), f"Bitaxe ({info.get('ASICModel')})"),
        firmware=info.get("version"),
        mac=str(info.get("macAddr", "")).upper() or None,
        hostname=info.get("hostname"),
        hashrate_ths=round(ghs / 1000.0, 4) if ghs is not None else None,
        power_w=num(info.get("power")),
        uptime_s=int(num(info.get("uptimeSeconds")) or 0) or None,
    )
    st.power_source = "reported" if st.power_w is not None else None
    st.boards = [
        BoardStatus(
            index=0,
            hashrate_ths=st.hashrate_ths,
            temp_c=num(info.get("temp")),
            chips=int(num(info.get("asicCount")) or 0) or None,
        )
    ]
    st.fans_rpm = [int(num(info.get("fanrpm")) or 0)]
    url = info.get("stratumURL")
    if url:
        st.pools = [
            PoolStatus(
                url=f"stratum+tcp://{url}:{info.get('stratumPort')}",
                user=info.get("stratumUser"),
                status="Alive",
                accepted=int(num(info.get("sharesAccepted")) or 0),
                rejected=int(num(info.get("sharesRejected")) or 0),
            )
        ]
    return st


class BitaxeDriver(BaseDriver):
    """AxeOS HTTP API (no login on stock AxeOS)."""

    family = "bitaxe"
    capabilities = frozenset({Capability.REBOOT})
    unsupported_reason: ClassVar[dict[Capability, str]] = {
        Capability.CURTAIL: "AxeOS has no sleep mode; a Bitaxe can only be restarted or unplugged",
        Capability.RESUME: "AxeOS has no sleep mode, so there is nothing to resume",
        Capability.POWER_TARGET: "AxeOS has no power limit; change frequency/voltage instead",
        Capability.RESTART_MINING: "AxeOS restarts the whole device; use reboot",
    }

    def __init__(
        self,
        host: str,
        port: int = 80,
        *,
        credentials: RigCredentials | None = None,
        timeouts: DriverTimeouts | None = None,
    ) -> None:
        super().__init__(host, port, credentials=credentials, timeouts=timeouts)
        self.web = HttpClient(host, port, None, timeout=self.timeouts.read_s)

    async def _info(self) -> dict[str, Any]:
        info = await self.web.get_json("/api/system/info")
        if not isinstance(info, dict) or "hashRate" not in info:
            raise ValueError("/api/system/info has no hashRate: not AxeOS?")
        return info

    async def _read_status(self) -> RigStatus:
        info = await self._info()
        st = parse_axeos(info)
        if int(num(info.get("overheat_mode")) or 0):
            st.errors.append("overheat mode: AxeOS throttled the ASIC")
            st.state, st.state_reason = "error", st.errors[-1]
            return st
        return finish_state(st, curtailed=False)

    async def _do_reboot(self) -> None:
        await self.web.request("POST", "/api/system/restart")

    async def apply_settings(
        self, *, frequency_mhz: int | None = None, core_voltage_mv: int | None = None
    ) -> None:
        """PATCH /api/system with frequency and/or coreVoltage, then read them back."""
        patch: dict[str, int] = {}
        if frequency_mhz is not None:
            patch["frequency"] = int(frequency_mhz)
        if core_voltage_mv is not None:
            patch["coreVoltage"] = int(core_voltage_mv)
        if not patch:
            raise ValueError(f"{self.name}: no setting given")
        await self.web.request("PATCH", "/api/system", patch)
        info = await self._info()
        wrong = {k: info.get(k) for k, v in patch.items() if int(num(info.get(k)) or -1) != v}
        if wrong:
            raise RigActionNotVerified(self.name, f"settings {patch} read back as {wrong}")
