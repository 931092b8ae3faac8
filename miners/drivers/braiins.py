"""Braiins OS / OS+ (BOSminer): cgminer API plus fans, temps, tunerstatus; pause and resume.

The power target is read from `tunerstatus` (PowerLimit). Setting it goes through Braiins' gRPC
or GraphQL API, which this driver does not speak, so POWER_TARGET is not a capability here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, first, num
from miners.drivers.common import finish_state, hashrate_ths, pools
from miners.status import BoardStatus, RigStatus


def parse_braiins(replies: dict[str, Any]) -> tuple[RigStatus, float | None]:
    """(RigStatus, power limit W) from summary, devs, fans, temps, tunerstatus, pools, version."""
    summary = first(replies["summary"], "SUMMARY")
    st = RigStatus(make="Bitmain", hashrate_ths=hashrate_ths(summary))
    st.hashrate_avg_ths = hashrate_ths(summary, "av")
    st.uptime_s = int(num(summary.get("Elapsed")) or 0) or None
    version = replies.get("version") or {}
    for v in version.get("VERSION") or []:
        for key, val in v.items():
            if key.lower().startswith("bosminer"):
                st.firmware = f"{key} {val}"
    temps = {t.get("ID"): t for t in (replies.get("temps") or {}).get("TEMPS") or []}
    nominal = 0.0
    for d in (replies.get("devs") or {}).get("DEVS") or []:
        t = temps.get(d.get("ID"), {})
        nominal += num(d.get("Nominal MHS")) or 0.0
        st.boards.append(
            BoardStatus(
                index=int(d.get("ID", len(st.boards))),
                hashrate_ths=hashrate_ths(d),
                temp_c=num(t.get("Board")),
                chip_temp_c=num(t.get("Chip")) or None,
            )
        )
    if nominal:
        st.expected_hashrate_ths = round(nominal / 1e6, 3)
    fans = (replies.get("fans") or {}).get("FANS") or []
    st.fans_rpm = [
        int(f.get("RPM", 0)) for f in fans if int(f.get("RPM", 0)) > 0 or f.get("ID", 9) < 2
    ]
    limit = None
    tuner = (replies.get("tunerstatus") or {}).get("TUNERSTATUS") or []
    if tuner:
        st.power_w = num(tuner[0].get("ApproximateMinerPowerConsumption"))
        st.power_source = "reported" if st.power_w is not None else None
        limit = num(tuner[0].get("PowerLimit"))
    st.pools = pools(replies.get("pools"))
    return st, limit


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
        replies = await self.rpc_many(
            ["summary", "devs", "fans", "temps", "tunerstatus", "pools", "version"]
        )
        st, self.power_limit_w = parse_braiins(replies)
        # The API shows no pause flag: after our own `pause`, the read-back that counts is the
        # hashrate reaching 0; while it is still falling the rig is not curtailed yet.
        paused = self._paused and not st.hashrate_ths
        if paused:
            st.state_reason = "paused (pause), 0 TH/s"
        elif self._paused:
            st.state_reason = "pause sent, hashrate still falling"
        return finish_state(st, curtailed=paused)

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
