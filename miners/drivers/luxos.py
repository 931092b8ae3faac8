"""LuxOS (LUXminer): session `logon`, `curtail` sleep/wakeup, power targets as `profileset`.

Privileged commands take the session id as their first parameter. LuxOS allows one session at
a time: the driver reuses the active one (`session`) before opening its own (`logon`). A power
target picks the highest-wattage profile at or under it, as LuxOS steps power by profile.
"""

from __future__ import annotations

from typing import Any, ClassVar

from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, first, num, parsed_status
from miners.rpc import RpcReplyError
from miners.status import RigStatus

STATUS_COMMANDS = ["summary", "devs", "pools", "version", "fans", "temps", "power"]


class LuxosDriver(BaseDriver):
    """LUXminer API on 4028."""

    family = "luxos"
    capabilities = frozenset(
        {Capability.CURTAIL, Capability.RESUME, Capability.POWER_TARGET, Capability.REBOOT}
    )
    unsupported_reason: ClassVar[dict[Capability, str]] = {
        Capability.RESTART_MINING: "not exposed by this driver; use reboot",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: str | None = None

    async def _read_status(self) -> RigStatus:
        replies = dict(await self.rpc_many([*STATUS_COMMANDS, "config"]))
        config = first(replies.pop("config"), "CONFIG")
        sleeping = str(config.get("CurtailMode", "")).lower() == "sleep"
        st = parsed_status(self.family, replies, "curtail sleep" if sleeping else None)
        st.mac = str(config.get("MACAddr", "")).upper() or st.mac
        st.hostname = config.get("Hostname") or st.hostname
        st.serial = config.get("SerialNumber") or st.serial
        return st

    async def session_id(self) -> str:
        """The active session id, opening one with `logon` when there is none."""
        if self._session:
            return self._session
        current = await self.rpc("session")
        sid = str((current.get("SESSION") or [{}])[0].get("SessionID", ""))
        if not sid:
            reply = await self.rpc("logon")
            sid = str((reply.get("SESSION") or [{}])[0].get("SessionID", ""))
        if not sid:
            raise RigError(self.name, "LuxOS gave no session id")
        self._session = sid
        return sid

    async def privileged(self, command: str, *args: str) -> dict[str, Any]:
        """A session command; logs on again once if the session expired."""
        for attempt in (1, 2):
            sid = await self.session_id()
            try:
                return await self.rpc(command, ",".join([sid, *args]))
            except RpcReplyError as exc:
                if attempt == 2 or "session" not in exc.fault.lower():
                    raise
                self._session = None
        raise RigError(self.name, f"{command}: no valid session")

    async def _do_curtail(self) -> None:
        await self.privileged("curtail", "sleep")

    async def _do_resume(self) -> None:
        await self.privileged("curtail", "wakeup")

    async def _profiles(self) -> dict[str, float]:
        reply = await self.rpc("profiles")
        return {
            str(p["Profile Name"]): float(p["Watts"])
            for p in reply.get("PROFILES") or []
            if num(p.get("Watts")) is not None
        }

    async def _do_set_power_target(self, watts: int) -> float:
        profiles = await self._profiles()
        fitting = {name: w for name, w in profiles.items() if w <= watts}
        if not fitting:
            lowest = min(profiles.values(), default=None)
            raise RigError(
                self.name, f"no LuxOS profile at or under {watts} W (lowest is {lowest} W)"
            )
        name = max(fitting, key=lambda n: fitting[n])
        reply = await self.privileged("profileset", name)
        got = (reply.get("PROFILE") or [{}])[0].get("Profile")
        if got != name:
            raise RigError(self.name, f"profileset {name} answered with profile {got!r}")
        return fitting[name]

    async def _read_power_target(self) -> float | None:
        config = first(await self.rpc("config"), "CONFIG")
        return (await self._profiles()).get(str(config.get("Profile")))

    async def _do_reboot(self) -> None:
        await self.privileged("rebootdevice")
        self._session = None
