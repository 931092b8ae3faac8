"""Bitaxe on AxeOS, over HTTP: status from GET /api/system/info, restart, settings by PATCH.

AxeOS has no sleep or power-limit API, so CURTAIL, RESUME and POWER_TARGET are absent and asked
for they are refused. Frequency and core voltage are settings (`apply_settings`), read back from
/api/system/info.
"""

from __future__ import annotations

from typing import Any, ClassVar

from miners.credentials import RigCredentials
from miners.driver import Capability, RigActionNotVerified
from miners.drivers.base import BaseDriver, DriverTimeouts, num, parsed_status
from miners.drivers.http import HttpClient
from miners.status import RigStatus


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
        return parsed_status(self.family, {"system_info": await self._info()})

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
