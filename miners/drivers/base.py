"""What every driver shares: capability checks, never-raising status, verify-by-reading-back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from miners.credentials import RigCredentials, warn_if_default
from miners.driver import Capability, RigActionNotVerified, RigError, RigUnsupportedAction
from miners.jsonrepair import JsonRepairError
from miners.status import RigStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DriverTimeouts:
    """Deadlines of one driver: per connect, per read, and how long an action may take to show."""

    connect_s: float = 3.0
    read_s: float = 5.0
    verify_s: float = 30.0
    verify_interval_s: float = 0.5
    max_bytes: int = 4_000_000


CAPABILITY_HOW: dict[Capability, str] = {
    Capability.CURTAIL: "curtail",
    Capability.RESUME: "resume",
    Capability.POWER_TARGET: "set a power target",
    Capability.REBOOT: "reboot",
    Capability.RESTART_MINING: "restart mining",
}


class BaseDriver:
    """Common machinery; a family subclass implements `_read_status` and the `_do_*` actions."""

    family: str = "unknown"
    capabilities: frozenset[Capability] = frozenset()
    unsupported_reason: ClassVar[dict[Capability, str]] = {}

    def __init__(
        self,
        host: str,
        port: int = 4028,
        *,
        credentials: RigCredentials | None = None,
        timeouts: DriverTimeouts | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.credentials = credentials
        self.timeouts = timeouts or DriverTimeouts()
        self._last_good: RigStatus | None = None
        self._warned_default = False

    @property
    def name(self) -> str:
        """host:port, how the rig is named in logs and errors."""
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def check_default_password(self) -> bool:
        """Warn once (no secret in the message) when the rig still uses its factory login."""
        if self._warned_default:
            return True
        self._warned_default = warn_if_default(self.name, self.family, self.credentials)
        return self._warned_default

    async def rpc(
        self, command: str, parameter: str | None = None, *, check: bool = True
    ) -> dict[str, Any]:
        """One cgminer-API request with this driver's deadlines; STATUS E raises when `check`."""
        from miners.rpc import rpc_command

        t = self.timeouts
        return await rpc_command(
            self.host,
            self.port,
            command,
            parameter,
            connect_timeout=t.connect_s,
            read_timeout=t.read_s,
            max_bytes=t.max_bytes,
            check_status=check,
        )

    async def rpc_many(
        self, commands: list[str], *, joined: bool = True, parallel: bool = False
    ) -> dict[str, Any]:
        """Several commands, '+'-joined when `joined` (else one request each, at once when
        `parallel`)."""
        from miners.rpc import rpc_multi

        t = self.timeouts
        return await rpc_multi(
            self.host,
            self.port,
            commands,
            connect_timeout=t.connect_s,
            read_timeout=t.read_s,
            max_bytes=t.max_bytes,
            allow_multi=joined,
            parallel=parallel,
        )

    # --- status ---

    async def _read_status(self) -> RigStatus:
        raise NotImplementedError

    async def status(self) -> RigStatus:
        """Normalized status; an unreachable or unreadable rig gives offline/error, never raises."""
        from miners.rpc import RpcReplyError

        try:
            st = await self._read_status()
        except RpcReplyError as exc:
            reset = isinstance(exc.__cause__, ConnectionError) and "after 0 bytes" in exc.fault
            if reset or exc.fault == "empty reply":
                # reset or closed before a single byte: the API daemon is down (crashed,
                # rebooting), whichever way the close reached us
                return self._failed("offline", _reason(exc))
            # it answered, but nothing usable: a sick rig, not a gone one
            return self._failed("error", _reason(exc))
        except (RigError, OSError, TimeoutError, JsonRepairError, ValueError) as exc:
            return self._failed("offline", _reason(exc))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            return self._failed("error", f"unexpected reply layout: {type(exc).__name__}: {exc}")
        st.ip = st.ip or self.host
        st.port = st.port or self.port
        st.family = self.family
        st.last_seen = datetime.now(UTC)
        self._last_good = st
        return st

    def _failed(self, state: str, reason: str) -> RigStatus:
        last = self._last_good
        st = RigStatus(
            ip=self.host,
            port=self.port,
            family=self.family,
            state="offline" if state == "offline" else "error",
            state_reason=reason,
            errors=[reason],
        )
        if last is not None:
            st.mac, st.serial, st.hostname = last.mac, last.serial, last.hostname
            st.make, st.model, st.firmware = last.make, last.model, last.firmware
            st.expected_hashrate_ths = last.expected_hashrate_ths
            st.last_seen = last.last_seen
        return st

    # --- actions ---

    def require(self, capability: Capability) -> None:
        """Raise RigUnsupportedAction with a clear message when this firmware cannot do it."""
        if capability not in self.capabilities:
            why = self.unsupported_reason.get(capability, "the firmware has no such action")
            raise RigUnsupportedAction(
                self.name, f"{self.family} cannot {CAPABILITY_HOW[capability]}: {why}"
            )

    async def curtail(self) -> None:
        """Stop hashing; verified by the firmware's own flag reading back curtailed."""
        self.require(Capability.CURTAIL)
        await self._do_curtail()
        await self.verify("curtail", lambda st: st.state == "curtailed", "state=curtailed")
        logger.info("rig curtailed rig=%s family=%s", self.name, self.family)

    async def resume(self) -> None:
        """Start hashing again; verified by the firmware reading back out of curtailment.

        A rig ramping up may still show 0 TH/s (state idle) for a while; that counts as resumed.
        """
        self.require(Capability.RESUME)
        await self._do_resume()
        await self.verify(
            "resume", lambda st: st.state in ("hashing", "idle"), "state=hashing (or ramping up)"
        )
        logger.info("rig resumed rig=%s family=%s", self.name, self.family)

    async def set_power_target(self, watts: int) -> None:
        """Set the power limit; verified by reading the limit back."""
        self.require(Capability.POWER_TARGET)
        if watts <= 0:
            raise ValueError(f"{self.name}: power target must be positive, got {watts} W")
        expected = await self._do_set_power_target(watts)
        got: list[float | None] = [None]

        async def check() -> bool:
            got[0] = await self._read_power_target()
            return got[0] is not None and abs(got[0] - expected) <= max(1.0, expected * 0.01)

        await self._verify_with(
            "set_power_target", check, lambda: f"power target {got[0]} W != {expected} W"
        )
        logger.info("rig power target set rig=%s watts=%s", self.name, expected)

    async def reboot(self) -> None:
        """Reboot; verified by the rig going away or coming back with a reset uptime."""
        self.require(Capability.REBOOT)
        before = await self.status()
        await self._do_reboot()
        seen: list[str] = ["no change"]

        async def check() -> bool:
            st = await self.status()
            if st.state in ("offline", "error"):
                seen[0] = f"rig went down ({st.state_reason})"
                return True
            if before.uptime_s is not None and st.uptime_s is not None:
                seen[0] = f"uptime {st.uptime_s}s (was {before.uptime_s}s)"
                return st.uptime_s < before.uptime_s
            return False

        await self._verify_with("reboot", check, lambda: seen[0])
        logger.info("rig reboot confirmed rig=%s how=%s", self.name, seen[0])

    async def restart_mining(self) -> None:
        """Restart the mining daemon (not the controller); verified by its uptime resetting."""
        self.require(Capability.RESTART_MINING)
        before = await self.status()
        await self._do_restart_mining()
        seen: list[str] = ["no change"]

        async def check() -> bool:
            st = await self.status()
            if st.state in ("offline", "error"):
                seen[0] = f"daemon went down ({st.state_reason})"
                return True
            if before.uptime_s is not None and st.uptime_s is not None:
                seen[0] = f"uptime {st.uptime_s}s (was {before.uptime_s}s)"
                return st.uptime_s < before.uptime_s
            return False

        await self._verify_with("restart_mining", check, lambda: seen[0])

    async def verify(
        self, action: str, ok: Callable[[RigStatus], bool], expected: str
    ) -> RigStatus:
        """Poll status until `ok` holds or the verify deadline passes (RigActionNotVerified)."""
        last: list[RigStatus] = [RigStatus()]

        async def check() -> bool:
            last[0] = await self.status()
            return ok(last[0])

        def observed() -> str:
            st = last[0]
            return (
                f"expected {expected}, read back state={st.state}"
                f" hashrate={st.hashrate_ths} TH/s power={st.power_w} W"
                + (f" ({st.state_reason})" if st.state_reason else "")
            )

        await self._verify_with(action, check, observed)
        return last[0]

    async def _verify_with(
        self, action: str, check: Callable[[], Awaitable[bool]], observed: Callable[[], str]
    ) -> None:
        deadline = time.monotonic() + self.timeouts.verify_s
        while True:
            if await check():
                return
            if time.monotonic() >= deadline:
                raise RigActionNotVerified(
                    self.name, f"{action} sent but not confirmed: {observed()}"
                )
            await asyncio.sleep(self.timeouts.verify_interval_s)

    async def _do_curtail(self) -> None:
        raise NotImplementedError

    async def _do_resume(self) -> None:
        raise NotImplementedError

    async def _do_set_power_target(self, watts: int) -> float:
        raise NotImplementedError

    async def _read_power_target(self) -> float | None:
        raise NotImplementedError

    async def _do_reboot(self) -> None:
        raise NotImplementedError

    async def _do_restart_mining(self) -> None:
        raise NotImplementedError


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def first(reply: dict[str, Any], section: str) -> dict[str, Any]:
    """First entry of a cgminer reply section (`SUMMARY`, `STATS`...); KeyError names it."""
    items = reply.get(section)
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise KeyError(f"reply has no {section} section")
    return items[0]


def num(value: Any) -> float | None:
    """A number from a reply value that may be a string ("4264.48"), empty, or missing."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


async def raw_exchange(
    host: str, port: int, payload: bytes, timeouts: DriverTimeouts, *, length_prefixed: bool = False
) -> bytes:
    """Send raw bytes, read the reply until the rig closes (or the NUL / length says it is whole).

    For the requests `miners.rpc` does not frame: btminer's encrypted {"enc":1,...} commands and
    API v3's 4-byte length-prefixed JSON.
    """
    rig = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), timeouts.connect_s
        )
    except (TimeoutError, OSError) as exc:
        raise RigError(rig, f"cannot connect ({exc!r})") from exc
    try:
        writer.write(payload)
        buf = b""
        deadline = time.monotonic() + timeouts.read_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RigError(rig, f"no complete reply within {timeouts.read_s}s")
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError as exc:
                raise RigError(rig, f"no complete reply within {timeouts.read_s}s") from exc
            except OSError as exc:
                raise RigError(rig, f"connection failed after {len(buf)} bytes ({exc!r})") from exc
            if not chunk:
                break
            buf += chunk
            if len(buf) > timeouts.max_bytes:
                raise RigError(rig, f"reply larger than {timeouts.max_bytes} bytes")
            if length_prefixed and len(buf) >= 4:
                need = int.from_bytes(buf[:4], "little")
                if len(buf) >= 4 + need:
                    return buf[4 : 4 + need]
            elif not length_prefixed and buf.endswith(b"\x00"):
                break
    finally:
        writer.close()
    if length_prefixed:
        raise RigError(rig, f"reply cut short after {len(buf)} bytes")
    return buf.rstrip(b"\x00")


def parsed_status(
    family: str, replies: Mapping[str, Any], curtailed_reason: str | None = None
) -> RigStatus:
    """RigStatus from the family's reply parsers (`miners.parsers`), plus a curtail flag.

    The flag comes from the control plane (web conf, `status`, `config`...), which the reply
    parsers do not see; a curtailed rig is curtailed even while its hashrate is still falling.
    """
    from miners.drivers.common import overheat_temp
    from miners.parsers import build_status

    b = build_status(family, replies)
    hot = overheat_temp(b.status.boards)
    if hot is not None:
        # not every firmware says why it stopped; a board over the line is reason enough
        b.fault(f"overheating: {hot:.0f} C")
    if curtailed_reason:
        b.curtailed(curtailed_reason)
    return b.finish() if hot is not None or curtailed_reason else b.status
