"""Generic cgminer / bfgminer: the plain API. Curtail is cgminer's own `ascdisable|N` per device.

cgminer cannot power a rig down or reboot its host; it can disable every ASC device (hashing
stops, the controller stays up), enable them again, and `restart` itself. These need the
privileged API (`api-allow W:...`); a read-only API answers STATUS E "Access denied".
"""

from __future__ import annotations

from typing import Any, ClassVar

from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, parsed_status
from miners.status import RigStatus

STATUS_COMMANDS = ["summary", "devs", "pools", "version", "stats"]


class CgminerDriver(BaseDriver):
    """Plain cgminer 4.x / bfgminer 5.x API."""

    family = "cgminer"
    capabilities = frozenset({Capability.CURTAIL, Capability.RESUME, Capability.RESTART_MINING})
    unsupported_reason: ClassVar[dict[Capability, str]] = {
        Capability.POWER_TARGET: "the cgminer API has no power limit",
        Capability.REBOOT: "the cgminer API cannot reboot the host; use restart_mining",
    }
    device_command = "asc"  # bfgminer rigs with FPGA/PGA devices would use "pga"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._device_ids: list[int] = []

    async def _read_status(self) -> RigStatus:
        replies = await self.rpc_many(STATUS_COMMANDS)
        devs = [d for d in replies["devs"].get("DEVS") or [] if isinstance(d, dict)]
        key = self.device_command.upper()
        self._device_ids = [int(d.get(key, d.get("ID")) or 0) for d in devs]
        disabled = bool(devs) and all(str(d.get("Enabled", "Y")) == "N" for d in devs)
        reason = f"every {self.device_command.upper()} device disabled" if disabled else None
        return parsed_status(self.family, replies, reason)

    async def _devices(self) -> list[int]:
        if not self._device_ids:
            await self._read_status()
        if not self._device_ids:
            raise RigError(self.name, "cgminer lists no devices to disable or enable")
        return self._device_ids

    async def _do_curtail(self) -> None:
        for dev in await self._devices():
            await self.rpc(f"{self.device_command}disable", str(dev))

    async def _do_resume(self) -> None:
        for dev in await self._devices():
            await self.rpc(f"{self.device_command}enable", str(dev))

    async def _do_restart_mining(self) -> None:
        await self.rpc("restart")
