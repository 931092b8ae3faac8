"""Stock Antminer (bmminer, S19 generation): status over the RPC, curtail/resume over the web API.

The RPC gives hashrate, boards, fans and pools but neither the MAC nor the sleep flag; those come
from the web API (`/cgi-bin/get_system_info.cgi`, `/cgi-bin/get_miner_conf.cgi`) behind HTTP
digest auth. Sleep is `miner-mode: 1` posted to `/cgi-bin/set_miner_conf.cgi`, normal is `0`;
the conf reads it back as `bitmain-work-mode`. The stock S19 answers `a+b` multi-commands with
STATUS E, so the driver remembers that per rig and then sends one command per connection.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from miners.credentials import RigCredentials, default_credentials
from miners.driver import Capability, RigError
from miners.drivers.base import BaseDriver, DriverTimeouts, parsed_status
from miners.drivers.http import HttpClient
from miners.status import RigStatus

logger = logging.getLogger(__name__)

READ_COMMANDS = ["summary", "stats", "pools"]
# `version` only names model and firmware: read once, and again after a reboot (a new firmware
# comes with one); every poll saves a connection, a quarter of the poll's sockets.
STATUS_COMMANDS = [*READ_COMMANDS, "version"]
IDENTITY_RETRY_S = 300.0  # a web server that refused us may be back (or the password fixed)
SLEEP_REASON = "sleep mode (web conf bitmain-work-mode 1)"


class AntminerDriver(BaseDriver):
    """Stock Bitmain firmware (bmminer) with the web API on port 80."""

    family = "antminer"
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
        # Opt-in: the separate commands of a poll on three connections at once. bmminer's API
        # thread queues them (pyasic does the same); off by default, one API client at a time.
        self.parallel_commands = False
        self._identity: dict[str, Any] | None = None
        self._identity_at = 0.0
        self._sleep_hint = False
        self._version_reply: dict[str, Any] | None = None
        self._uptime_s = 0

    async def _read_status(self) -> RigStatus:
        version = self._version_reply
        commands = STATUS_COMMANDS if version is None else READ_COMMANDS
        replies = await self.rpc_many(
            commands, joined=self.multi_command is not False, parallel=self.parallel_commands
        )
        if self.multi_command is None:
            self.multi_command = bool(getattr(replies, "joined", False))
        if version is None:
            self._version_reply = replies.get("version")
        else:
            replies["version"] = version
        st = parsed_status(self.family, replies)
        if version is not None and st.uptime_s is not None and st.uptime_s < self._uptime_s:
            self._version_reply = None  # rebooted since: read the version again next poll
        self._uptime_s = st.uptime_s or 0
        # The RPC cannot tell sleep from a stall; ask the web conf only when it matters.
        if (self._sleep_hint or st.state != "hashing") and await self._sleeping():
            st = parsed_status(self.family, replies, SLEEP_REASON)
        if self._identity is None or (
            not self._identity and time.monotonic() - self._identity_at > IDENTITY_RETRY_S
        ):
            await self._load_identity()
        if self._identity:
            st.mac = str(self._identity.get("macaddr") or "").upper() or None
            st.hostname = self._identity.get("hostname") or st.hostname
            st.serial = self._identity.get("serinum") or st.serial
        return st

    async def _load_identity(self) -> None:
        self._identity_at = time.monotonic()
        try:
            self._identity = await self.web.get_json("/cgi-bin/get_system_info.cgi")
        except RigError as exc:  # identity is optional; the RPC status stands on its own
            logger.info("antminer web identity unavailable rig=%s err=%s", self.name, exc)
            self._identity = {}
        self.check_default_password()

    async def _sleeping(self) -> bool:
        try:
            conf = await self.web.get_json("/cgi-bin/get_miner_conf.cgi")
        except RigError as exc:
            if self._sleep_hint:
                raise  # we curtailed it: the answer matters, do not guess
            logger.info("antminer web conf unavailable rig=%s err=%s", self.name, exc)
            return False
        return str(conf.get("bitmain-work-mode", "0")) == "1"

    async def _set_mode(self, mode: int) -> None:
        resp = await self.web.request("POST", "/cgi-bin/set_miner_conf.cgi", {"miner-mode": mode})
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict) or body.get("stats") != "success":
            msg = body.get("msg") if isinstance(body, dict) else None
            msg = msg or resp.body[:80].decode("latin-1", "replace")
            raise RigError(self.name, f"set_miner_conf miner-mode={mode} refused: {msg}")

    async def _do_curtail(self) -> None:
        self._sleep_hint = True
        await self._set_mode(1)

    async def _do_resume(self) -> None:
        await self._set_mode(0)
        self._sleep_hint = False

    async def _do_reboot(self) -> None:
        await self.web.request("GET", "/cgi-bin/reboot.cgi")
