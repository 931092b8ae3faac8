"""Generic cgminer / bfgminer: the plain API. Curtail is cgminer's own `ascdisable|N` per device.

cgminer cannot power a rig down or reboot its host; it can disable every ASC device (hashing
stops, the controller stays up), enable them again, and `restart` itself. These need the
privileged API (`api-allow W:...`); a read-only API answers STATUS E "Access denied".
"""

from __future__ import annotations

from typing import Any, ClassVar

from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, first, num
from miners.drivers.common import finish_state, hashrate_ths, pools
from miners.status import BoardStatus, RigStatus

MAX_FANS = 16


def parse_cgminer(replies: dict[str, Any]) -> tuple[RigStatus, bool]:
    """(RigStatus, every device disabled) from cgminer summary, devs, pools, stats replies."""
    summary = first(replies["summary"], "SUMMARY")
    st = RigStatus(hashrate_ths=hashrate_ths(summary))
    st.hashrate_avg_ths = hashrate_ths(summary, "av")
    st.uptime_s = int(num(summary.get("Elapsed")) or 0) or None
    devs = replies.get("devs", {}).get("DEVS") or []
    for d in devs:
        st.boards.append(
            BoardStatus(
                index=int(d.get("ASC", d.get("ID", len(st.boards)))),
                hashrate_ths=hashrate_ths(d),
                temp_c=num(d.get("Temperature")),
            )
        )
    stats_list = (replies.get("stats") or {}).get("STATS") or []
    head = stats_list[0] if stats_list else {}
    st.model = head.get("Type")
    st.firmware = head.get("Miner") or head.get("CGMiner") or head.get("Cgminer")
    stats = stats_list[1] if len(stats_list) > 1 else {}
    fans = [int(num(stats.get(f"fan{i}")) or 0) for i in range(1, MAX_FANS + 1)]
    expected_fans = int(num(stats.get("fan_num")) or 0)
    live = [f for f in fans if f > 0]
    st.fans_rpm = live + [0] * max(0, expected_fans - len(live))
    ideal = num(stats.get("total_rateideal"))
    if ideal:
        st.expected_hashrate_ths = round(ideal / 1000.0, 3)
    st.pools = pools(replies.get("pools"))
    disabled = bool(devs) and all(str(d.get("Enabled", "Y")) == "N" for d in devs)
    return st, disabled


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
        replies = await self.rpc_many(["summary", "devs", "pools", "stats"])
        st, disabled = parse_cgminer(replies)
        self._device_ids = [b.index for b in st.boards]
        if disabled:
            st.state_reason = "every ASC device disabled (ascdisable)"
        return finish_state(st, curtailed=disabled)

    async def _devices(self) -> list[int]:
        if not self._device_ids:
            await self._read_status()
        if not self._device_ids:
            raise RigError(self.name, "cgminer lists no ASC devices to disable or enable")
        return self._device_ids

    async def _do_curtail(self) -> None:
        for dev in await self._devices():
            await self.rpc(f"{self.device_command}disable", str(dev))

    async def _do_resume(self) -> None:
        for dev in await self._devices():
            await self.rpc(f"{self.device_command}enable", str(dev))

    async def _do_restart_mining(self) -> None:
        await self.rpc("restart")
