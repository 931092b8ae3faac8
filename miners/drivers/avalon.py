"""Canaan Avalon: status from `estats`' packed `MM ID0` string, softoff/softon, workmode, reboot.

`MM ID0` packs everything as `Key[value]` pairs: SYSTEMSTATU says In Work / In Idle (softoff),
GHSmm the hashrate, MGHS and MTavg per board, Fan1/Fan2, PS[...] the PSU readings with the
wall power 5th, WORKMODE the work mode.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, num, parsed_status
from miners.parsers.avalon import parse_mm_string
from miners.status import RigStatus

STATUS_COMMANDS = ["summary", "stats", "pools", "version"]


def workmode(replies: dict[str, Any]) -> int | None:
    """WORKMODE[] from the `MM ID` strings of a stats/estats reply."""
    for entry in replies.get("stats", {}).get("STATS") or []:
        for key, val in entry.items():
            if key.startswith("MM ID") and isinstance(val, str):
                mode = num(parse_mm_string(val).get("WORKMODE"))
                if mode is not None:
                    return int(mode)
    return None


class AvalonDriver(BaseDriver):
    """Canaan's cgminer on 4028 (JSON API; `ascset` for control)."""

    family = "avalon"
    capabilities = frozenset({Capability.CURTAIL, Capability.RESUME, Capability.REBOOT})
    unsupported_reason: ClassVar[dict[Capability, str]] = {
        Capability.POWER_TARGET: "Avalon firmware steps power by work mode, not watts "
        "(use set_workmode)",
        Capability.RESTART_MINING: "not exposed by Canaan's cgminer API; use reboot",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workmode: int | None = None

    async def _read_status(self) -> RigStatus:
        replies = await self.rpc_many(STATUS_COMMANDS)
        self.workmode = workmode(replies)
        # SYSTEMSTATU "In Idle" (after softoff) is read as curtailed by the avalon parser
        return parsed_status(self.family, replies)

    async def _ascset(self, *args: str) -> None:
        reply = await self.rpc("ascset", ",".join(["0", *args]))
        msg = str((reply.get("STATUS") or [{}])[0].get("Msg", ""))
        if "success" not in msg and "OK" not in msg:
            raise RigError(self.name, f"ascset {','.join(args)} refused: {msg}")

    async def _do_curtail(self) -> None:
        await self._ascset("softoff", str(int(time.time())))

    async def _do_resume(self) -> None:
        await self._ascset("softon", str(int(time.time())))

    async def _do_reboot(self) -> None:
        await self._ascset("reboot", "0")

    async def set_workmode(self, mode: int) -> None:
        """Select a work mode (0 normal, 1 performance on the 1047); verified by WORKMODE[]."""
        await self._ascset("workmode", "set", str(mode))
        await self.verify("set_workmode", lambda _st: self.workmode == mode, f"WORKMODE[{mode}]")
