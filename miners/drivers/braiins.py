"""Braiins OS / OS+ (BOSminer): cgminer API plus fans, temps, tunerstatus; pause and resume.

The power target is read from `tunerstatus` (PowerLimit). Setting it goes through Braiins' gRPC
or GraphQL API, which this driver does not speak, so POWER_TARGET is not a capability here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, num, parsed_status
from miners.status import RigStatus

STATUS_COMMANDS = ["summary", "devs", "pools", "version", "fans", "temps", "tunerstatus"]


def power_limit(replies: dict[str, Any]) -> float | None:
    """PowerLimit (W) from a `tunerstatus` reply, None when the tuner is off or absent."""
    tuner = (replies.get("tunerstatus") or {}).get("TUNERSTATUS") or []
    return num(tuner[0].get("PowerLimit")) if tuner and isinstance(tuner[0], dict) else None


class BraiinsDriver(BaseDriver):
    """BOSminer / BOSminer+ API on 4028."""

    family = "braiins"
    capabilities = frozenset({Capability.CURTAIL, Capability.RESUME})
    unsupported_reason: ClassVar[dict[Capability, str]] = {
        Capability.POWER_TARGET: "Braiins OS sets power targets over gRPC/GraphQL, not this API "
        "(the current target is read from tunerstatus)",
        Capability.REBOOT: "BOSminer's API has no reboot command",
        Capability.RESTART_MINING: "BOSminer's API has no restart command",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.power_limit_w: float | None = None
        self._paused = False

    async def _read_status(self) -> RigStatus:
        replies = await self.rpc_many(STATUS_COMMANDS)
        self.power_limit_w = power_limit(replies)
        st = parsed_status(self.family, replies)
        # The API shows no pause flag: after our own `pause`, the read-back that counts is the
        # hashrate reaching 0; while it is still falling the rig is not curtailed yet.
        if self._paused and not st.hashrate_ths:
            return parsed_status(self.family, replies, "paused (pause sent, 0 TH/s)")
        if self._paused:
            st.errors.append("pause sent, hashrate still falling")
        return st

    async def _read_power_target(self) -> float | None:
        await self._read_status()
        return self.power_limit_w

    async def _do_curtail(self) -> None:
        reply = await self.rpc("pause")
        if reply.get("PAUSE") != [True]:
            raise RigError(self.name, f"pause not acknowledged: {reply.get('STATUS')}")
        self._paused = True

    async def _do_resume(self) -> None:
        reply = await self.rpc("resume")
        if reply.get("RESUME") != [True]:
            raise RigError(self.name, f"resume not acknowledged: {reply.get('STATUS')}")
        self._paused = False
