"""Whatsminer (btminer): API v2 on 4028 (token + AES privileged commands) and API v3 on 4433.

v2 reads are cgminer-style (`summary` carries MAC, Power and Power Limit; `edevs` per board) plus
flat replies (`status` → Msg.mineroff). Privileged commands (power_off, power_on,
adjust_power_limit, reboot, restart_btminer) go through `get_token` and AES-256-ECB, see
`miners.drivers.btminer_crypto`. v3 frames JSON with a 4-byte length and signs `set.*` commands
with a salted sha256 token.
"""

from __future__ import annotations

import json
import time
from typing import Any

from miners.credentials import RigCredentials, default_credentials
from miners.driver import Capability, RigError
from miners.drivers import btminer_crypto as crypto
from miners.drivers.base import BaseDriver, DriverTimeouts, num, parsed_status, raw_exchange
from miners.drivers.common import finish_state
from miners.jsonrepair import loads_lenient
from miners.status import BoardStatus, PoolStatus, RigStatus

V3_ACCOUNT = "super"


STATUS_COMMANDS = ["summary", "edevs", "pools"]
IDENTITY_COMMANDS = ["get_version", "get_miner_info"]  # flat replies, not joinable with '+'


class WhatsminerDriver(BaseDriver):
    """btminer API v2 (firmware 2021+ with API 2.0.x)."""

    family = "whatsminer"
    capabilities = frozenset(
        {
            Capability.CURTAIL,
            Capability.RESUME,
            Capability.POWER_TARGET,
            Capability.REBOOT,
            Capability.RESTART_MINING,
        }
    )

    def __init__(
        self,
        host: str,
        port: int = 4028,
        *,
        credentials: RigCredentials | None = None,
        timeouts: DriverTimeouts | None = None,
    ) -> None:
        creds = credentials or default_credentials(self.family)
        super().__init__(host, port, credentials=creds, timeouts=timeouts)
        self.power_limit_w: float | None = None
        self._identity: dict[str, Any] = {}

    async def _read_status(self) -> RigStatus:
        replies = dict(await self.rpc_many(STATUS_COMMANDS))
        summary = (replies["summary"].get("SUMMARY") or [{}])[0]
        self.power_limit_w = num(summary.get("Power Limit"))
        if not self._identity:
            for command in IDENTITY_COMMANDS:
                self._identity[command] = await self.rpc(command, check=False)
        replies.update(self._identity)
        state = await self.rpc("status", check=False)
        raw_msg = state.get("Msg")
        msg: dict[str, Any] = raw_msg if isinstance(raw_msg, dict) else {}
        off = str(msg.get("mineroff", "false")).lower() == "true"
        reason = f"power_off (mineroff, {msg.get('mineroff_reason') or 'no reason given'})"
        return parsed_status(self.family, replies, reason if off else None)

    async def privileged(self, command: str, **params: str) -> dict[str, Any]:
        """Run one privileged command: get_token, encrypt, send, decrypt, check STATUS."""
        if self.credentials is None:
            raise RigError(self.name, "whatsminer privileged commands need the admin password")
        self.check_default_password()
        token = await self.rpc("get_token", check=False)
        msg = token.get("Msg")
        if not isinstance(msg, dict) or not {"time", "salt", "newsalt"} <= set(msg):
            raise RigError(self.name, f"get_token refused: {token.get('Msg')!r}")
        passwd_md5, sign = crypto.v2_token(
            self.credentials.secret(), str(msg["time"]), str(msg["salt"]), str(msg["newsalt"])
        )
        key = crypto.aes_key(passwd_md5)
        body = {"cmd": command, "token": sign, **params}
        packet = json.dumps({"enc": 1, "data": crypto.encrypt(key, body)}).encode()
        raw = await raw_exchange(self.host, self.port, packet, self.timeouts)
        outer, _rules = loads_lenient(raw)
        if not isinstance(outer, dict):
            raise RigError(self.name, f"{command}: reply is not a JSON object")
        if "enc" not in outer:
            # the rig could not decrypt (wrong password) and answered in the clear
            raise RigError(self.name, f"{command} refused: {outer.get('Msg')!r} (wrong password?)")
        reply = crypto.decrypt(key, str(outer["enc"]))
        if reply.get("STATUS") != "S":
            raise RigError(
                self.name, f"{command} refused: Code {reply.get('Code')} {reply.get('Msg')}"
            )
        return reply

    async def _do_curtail(self) -> None:
        await self.privileged("power_off", respbefore="true")

    async def _do_resume(self) -> None:
        await self.privileged("power_on")

    async def _do_set_power_target(self, watts: int) -> float:
        await self.privileged("adjust_power_limit", power_limit=str(int(watts)))
        return float(watts)

    async def _read_power_target(self) -> float | None:
        await self._read_status()
        return self.power_limit_w

    async def _do_reboot(self) -> None:
        await self.privileged("reboot")

    async def _do_restart_mining(self) -> None:
        await self.privileged("restart_btminer")


class WhatsminerV3Driver(BaseDriver):
    """btminer API v3 (TCP 4433, length-prefixed JSON; `set.*` signed with a salted token)."""

    family = "whatsminer_v3"
    capabilities = WhatsminerDriver.capabilities

    def __init__(
        self,
        host: str,
        port: int = 4433,
        *,
        credentials: RigCredentials | None = None,
        timeouts: DriverTimeouts | None = None,
    ) -> None:
        creds = credentials or default_credentials("whatsminer")
        super().__init__(host, port, credentials=creds, timeouts=timeouts)
        self._salt: str | None = None
        self._info: dict[str, Any] | None = None
        self.power_limit_w: float | None = None

    async def call(self, cmd: str, param: Any = None) -> dict[str, Any]:
        """One API v3 exchange; `set.*` commands are signed. Raises RigError when code != 0."""
        req: dict[str, Any] = {"cmd": cmd, "param": param}
        if cmd.startswith("set."):
            if self.credentials is None:
                raise RigError(self.name, "whatsminer API v3 set commands need the password")
            self.check_default_password()
            salt = await self.salt()
            ts = int(time.time())
            req.update(
                ts=ts,
                account=V3_ACCOUNT,
                token=crypto.v3_token(cmd, self.credentials.secret(), salt, ts),
            )
        body = json.dumps(req).encode()
        raw = await raw_exchange(
            self.host,
            self.port,
            len(body).to_bytes(4, "little") + body,
            self.timeouts,
            length_prefixed=True,
        )
        reply, _rules = loads_lenient(raw)
        if not isinstance(reply, dict):
            raise RigError(self.name, f"{cmd}: reply is not a JSON object")
        if reply.get("code") != 0:
            raise RigError(self.name, f"{cmd} refused: code {reply.get('code')} {reply.get('msg')}")
        return reply

    async def salt(self) -> str:
        """The rig's token salt (`get.device.info` param `salt`), fetched once."""
        if self._salt is None:
            reply = await self.call("get.device.info", "salt")
            self._salt = str(reply["msg"]["salt"])
        return self._salt

    async def _read_status(self) -> RigStatus:
        if self._info is None:
            self._info = (await self.call("get.device.info"))["msg"]
        info = self._info or {}
        summary = (await self.call("get.miner.status", "summary"))["msg"]["summary"]
        edevs = (await self.call("get.miner.status", "edevs"))["msg"].get("edevs", [])
        pool_list = (await self.call("get.miner.status", "pools"))["msg"].get("pools", [])
        st = RigStatus(
            make="MicroBT",
            model=info.get("miner", {}).get("type"),
            serial=info.get("miner", {}).get("miner-sn"),
            firmware=info.get("system", {}).get("fwversion"),
            mac=str(info.get("network", {}).get("mac", "")).upper() or None,
            hostname=info.get("network", {}).get("hostname"),
            hashrate_ths=num(summary.get("hash-realtime")),
            hashrate_avg_ths=num(summary.get("hash-average")),
            expected_hashrate_ths=num(summary.get("factory-hash")),
            power_w=num(summary.get("power-realtime")),
            uptime_s=int(num(summary.get("elapsed")) or 0) or None,
        )
        st.power_source = "reported" if st.power_w is not None else None
        self.power_limit_w = num(summary.get("power-limit"))
        st.fans_rpm = [
            int(num(summary.get(k)) or 0) for k in ("fan-speed-in", "fan-speed-out") if k in summary
        ]
        for d in edevs:
            st.boards.append(
                BoardStatus(
                    index=int(d.get("id", len(st.boards))),
                    hashrate_ths=num(d.get("hash-average")),
                    chip_temp_c=num(d.get("chip-temp-max")),
                    chips=int(num(d.get("effective-chips")) or 0) or None,
                )
            )
        st.pools = [
            PoolStatus(url=p.get("url"), user=p.get("account"), status=p.get("status"))
            for p in pool_list
        ]
        stopped = str(summary.get("miner-state", "")).lower() == "stop"
        if stopped:
            st.state_reason = "miner service stopped (set.miner.service stop)"
        return finish_state(st, curtailed=stopped)

    async def _do_curtail(self) -> None:
        await self.call("set.miner.service", "stop")

    async def _do_resume(self) -> None:
        await self.call("set.miner.service", "start")

    async def _do_set_power_target(self, watts: int) -> float:
        await self.call("set.miner.power_limit", int(watts))
        return float(watts)

    async def _read_power_target(self) -> float | None:
        await self._read_status()
        return self.power_limit_w

    async def _do_reboot(self) -> None:
        await self.call("set.system.reboot")

    async def _do_restart_mining(self) -> None:
        await self.call("set.miner.service", "restart")


__all__ = ["WhatsminerDriver", "WhatsminerV3Driver"]
