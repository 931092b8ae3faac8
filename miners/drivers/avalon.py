"""Canaan Avalon: status from `estats`' packed `MM ID0` string, softoff/softon, workmode, reboot.

`MM ID0` packs everything as `Key[value]` pairs: SYSTEMSTATU says In Work / In Idle (softoff),
GHSmm the hashrate, MGHS and MTavg per board, Fan1/Fan2, PS[...] the PSU readings with the
wall power 5th, WORKMODE the work mode.
"""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, first, num
from miners.drivers.common import finish_state, hashrate_ths, pools
from miners.status import BoardStatus, RigStatus

_MM_FIELD = re.compile(r"(\w+)\[([^\]]*)\]")


def parse_mm_id(text: str) -> dict[str, str]:
    """`Ver[1047-...] SYSTEMSTATU[Work: In Work, ...] PS[0 1212 ...]` → {key: raw value}."""
    return {k: v.strip() for k, v in _MM_FIELD.findall(text)}


def _nums(value: str | None) -> list[float]:
    out = []
    for part in (value or "").replace("%", "").split():
        n = num(part)
        if n is not None:
            out.append(n)
    return out


def parse_avalon(replies: dict[str, Any]) -> tuple[RigStatus, dict[str, str]]:
    """(RigStatus, MM ID fields) from summary, estats, pools, version replies."""
    summary = first(replies["summary"], "SUMMARY")
    st = RigStatus(make="Canaan", hashrate_ths=hashrate_ths(summary, "1m"))
    st.hashrate_avg_ths = hashrate_ths(summary, "av")
    st.uptime_s = int(num(summary.get("Elapsed")) or 0) or None
    version = first(replies["version"], "VERSION") if replies.get("version") else {}
    st.model = version.get("PROD")
    st.firmware = version.get("VERSION") or version.get("CGVERSION")
    mac = str(version.get("MAC", "")).replace(":", "").upper()
    if len(mac) == 12:
        st.mac = ":".join(mac[i : i + 2] for i in range(0, 12, 2))
    mm: dict[str, str] = {}
    for entry in replies["estats"].get("STATS") or []:
        for key, val in entry.items():
            if key.startswith("MM ID") and isinstance(val, str):
                mm.update(parse_mm_id(val))
    ghs_mm = num(mm.get("GHSmm"))
    if ghs_mm is not None:
        st.hashrate_ths = round(ghs_mm / 1000.0, 3)
    per_board = _nums(mm.get("MGHS"))
    temps = _nums(mm.get("MTavg"))
    tmax = _nums(mm.get("MTmax"))
    for i, ghs in enumerate(per_board):
        st.boards.append(
            BoardStatus(
                index=i,
                hashrate_ths=round(ghs / 1000.0, 3),
                temp_c=temps[i] if i < len(temps) else None,
                chip_temp_c=tmax[i] if i < len(tmax) else None,
            )
        )
    st.fans_rpm = [int(num(mm.get(f"Fan{i}")) or 0) for i in (1, 2) if f"Fan{i}" in mm]
    ps = _nums(mm.get("PS"))
    if len(ps) >= 5 and ps[4] > 0:
        st.power_w, st.power_source = ps[4], "reported"
    st.pools = pools(replies.get("pools"))
    return st, mm


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
        replies = await self.rpc_many(["summary", "estats", "pools", "version"])
        st, mm = parse_avalon(replies)
        system = mm.get("SYSTEMSTATU", "")
        self.workmode = int(num(mm.get("WORKMODE")) or 0) if "WORKMODE" in mm else None
        idle = "in idle" in system.lower()
        if idle:
            st.state_reason = f"softoff ({system})"
        return finish_state(st, curtailed=idle)

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
