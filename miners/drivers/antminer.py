"""Stock Antminer (bmminer, S19 generation): status over the RPC, curtail/resume over the web API.

The RPC gives hashrate, boards, fans and pools but neither the MAC nor the sleep flag; those come
from the web API (`/cgi-bin/get_system_info.cgi`, `/cgi-bin/get_miner_conf.cgi`) behind HTTP
digest auth. Sleep is `miner-mode: 1` posted to `/cgi-bin/set_miner_conf.cgi`, normal is `0`;
the conf reads it back as `bitmain-work-mode`. The stock S19 answers `a+b` multi-commands with
STATUS E, so the driver remembers per rig and then sends one command per connection.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from miners.credentials import RigCredentials, default_credentials
from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, DriverTimeouts, first, num
from miners.drivers.common import efficiency, hashrate_ths, overheat_temp, pools
from miners.drivers.http import HttpClient
from miners.status import BoardStatus, RigStatus

logger = logging.getLogger(__name__)

MAX_CHAINS = 16


def parse_antminer(replies: dict[str, Any]) -> RigStatus:
    """RigStatus from bmminer `summary`, `stats` and `pools` replies."""
    summary = first(replies["summary"], "SUMMARY")
    stats_list = replies["stats"].get("STATS") or []
    head = stats_list[0] if stats_list else {}
    stats = stats_list[1] if len(stats_list) > 1 else {}
    st = RigStatus(make="Bitmain", model=head.get("Type"), firmware=head.get("Miner"))
    st.hashrate_ths = hashrate_ths(summary)
    st.hashrate_avg_ths = hashrate_ths(summary, "av")
    ideal = num(stats.get("total_rateideal"))
    if ideal:
        st.expected_hashrate_ths = round(ideal / 1000.0, 3)
    st.uptime_s = int(summary.get("Elapsed", 0)) or None
    st.serial = stats.get("miner_id") or None
    fans = int(num(stats.get("fan_num")) or 0)
    st.fans_rpm = [int(num(stats.get(f"fan{i}")) or 0) for i in range(1, fans + 1)]
    slots = int(num(stats.get("miner_count")) or 0)
    for i in range(1, MAX_CHAINS + 1):
        rate = stats.get(f"chain_rate{i}")
        if rate in (None, ""):
            continue
        chips = int(num(stats.get(f"chain_acn{i}")) or 0)
        temp = num(stats.get(f"temp2_{i}")) or num(stats.get(f"temp{i}"))
        st.boards.append(
            BoardStatus(
                index=i - 1,
                hashrate_ths=round((num(rate) or 0.0) / 1000.0, 3),
                temp_c=num(stats.get(f"temp{i}")) or None,
                chip_temp_c=temp or None,
                chips=chips,
            )
        )
    full = max((b.chips or 0 for b in st.boards), default=0)
    for b in st.boards:
        b.expected_chips = full or None
        if full and (b.chips or 0) == 0:
            st.errors.append(f"board {b.index}: no ASICs detected (0/{full} chips)")
    if slots and len(st.boards) < slots:
        st.errors.append(f"{slots - len(st.boards)} of {slots} hashboards missing")
    st.pools = pools(replies.get("pools"))
    hot = overheat_temp(st.boards)
    if hot is not None:
        st.errors.append(f"overheating: temperature {hot:.0f} C")
        st.state, st.state_reason = "error", st.errors[-1]
    elif (st.hashrate_ths or 0) > 0:
        st.state = "hashing"
        dead_fans = [i for i, rpm in enumerate(st.fans_rpm) if rpm == 0]
        if dead_fans:
            st.errors.append(f"fan {dead_fans[0]} at 0 rpm")
    else:
        st.state, st.state_reason = "idle", "hashrate 0"
    return st


class AntminerDriver(BaseDriver):
    """Stock Bitmain firmware (bmminer) with the web API on port 80."""

    family: str = "antminer"
    capabilities = frozenset({Capability.CURTAIL, Capability.RESUME, Capability.REBOOT})
    unsupported_reason: ClassVar[dict[Capability, str]] = {
        Capability.POWER_TARGET: "stock firmware only offers sleep/normal, no power limit",
        Capability.RESTART_MINING: "stock firmware has no API restart; use reboot",
    }

    def __init__(
        self,
        host: str,
        port: int = 4028,
        *,
        http_port: int = 80,
        credentials: RigCredentials | None = None,
        timeouts: DriverTimeouts | None = None,
    ) -> None:
        creds = credentials or default_credentials(self.family)
        super().__init__(host, port, credentials=creds, timeouts=timeouts)
        self.http_port = http_port
        self.web = HttpClient(host, http_port, creds, timeout=self.timeouts.read_s)
        self.multi_command: bool | None = None  # learned: stock S19 refuses '+'
        self._identity: dict[str, Any] | None = None
        self._sleep_hint = False

    async def _read_status(self) -> RigStatus:
        replies = await self.rpc_many(
            ["summary", "stats", "pools"], joined=self.multi_command is not False
        )
        if self.multi_command is None:
            self.multi_command = bool(getattr(replies, "joined", False))
        st = parse_antminer(replies)
        if self._identity is None:
            await self._load_identity()
        if self._identity:
            st.mac = str(self._identity.get("macaddr") or "").upper() or None
            st.hostname = self._identity.get("hostname")
            st.serial = self._identity.get("serinum") or st.serial
        # The RPC cannot tell sleep from a stall; ask the web conf only when it matters.
        if (self._sleep_hint or st.state == "idle") and await self._sleeping():
            st.state, st.state_reason = "curtailed", "sleep mode (miner-mode 1)"
            st.errors = [e for e in st.errors if not e.startswith("fan ")]
        return st

    async def _load_identity(self) -> None:
        try:
            self._identity = await self.web.get_json("/cgi-bin/get_system_info.cgi")
        except Exception as exc:  # identity is optional; the RPC status stands on its own
            logger.debug("antminer web identity unavailable rig=%s err=%s", self.name, exc)
            self._identity = {}
        self.check_default_password()

    async def _sleeping(self) -> bool:
        conf = await self.web.get_json("/cgi-bin/get_miner_conf.cgi")
        return str(conf.get("bitmain-work-mode", "0")) == "1"

    async def _set_mode(self, mode: int) -> None:
        resp = await self.web.request("POST", "/cgi-bin/set_miner_conf.cgi", {"miner-mode": mode})
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if body.get("stats") != "success":
            msg = body.get("msg") or resp.body[:80].decode("latin-1", "replace")
            raise RigError(self.name, f"set_miner_conf miner-mode={mode} refused: {msg}")

    async def _do_curtail(self) -> None:
        self._sleep_hint = True
        await self._set_mode(1)

    async def _do_resume(self) -> None:
        await self._set_mode(0)
        self._sleep_hint = False

    async def _do_reboot(self) -> None:
        await self.web.request("GET", "/cgi-bin/reboot.cgi")


__all__ = ["AntminerDriver", "efficiency", "parse_antminer"]
