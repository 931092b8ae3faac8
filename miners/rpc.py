"""Asyncio client for the CGMiner API family (cgminer, bmminer, BOSminer, btminer, LUXminer, ...).

One TCP connection per request, as the daemons expect: send the request, read until the rig
closes the socket (or sends the NUL terminator), strip the NUL, parse. Connect and read each
have a deadline and the reply has a size cap, so a hung or chatty rig cannot stall a poll.
Every failure is an `RpcError` naming the rig, the command and the fault.

A bare `asyncio.Protocol` is used instead of streams: the poller runs thousands of these per
second on two cores, and the protocol avoids the StreamReader machinery per call.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

from miners.driver import RigError
from miners.jsonrepair import JsonRepairError, loads_lenient

logger = logging.getLogger(__name__)

__all__ = [
    "RpcConnectionError",
    "RpcError",
    "RpcReplies",
    "RpcReplyError",
    "RpcTimeoutError",
    "parse_reply",
    "parse_text_reply",
    "rpc_command",
    "rpc_multi",
    "status_error",
]


class RpcError(RigError):
    """A request to a rig failed; `.rig` is host:port, `.command` the command, `.fault` why."""

    def __init__(self, rig: str, command: str, fault: str) -> None:
        super().__init__(rig, f"command {command!r}: {fault}")
        self.command = command
        self.fault = fault


class RpcConnectionError(RpcError):
    """The rig could not be reached (refused, unreachable, connect deadline): treat as offline."""


class RpcTimeoutError(RpcError):
    """The rig accepted the connection but did not finish its reply before the read deadline."""


class RpcReplyError(RpcError):
    """The rig answered but the reply is unusable (too large, unreadable, reset, STATUS E)."""


class RpcReplies(dict[str, dict[str, Any]]):
    """Replies by command; `joined` is True when the rig answered one '+'-joined request."""

    joined: bool = False


class _ReplyProtocol(asyncio.Protocol):
    """Collects one reply: done at EOF, at a trailing NUL, or failed past `max_bytes`."""

    __slots__ = ("chunks", "done", "max_bytes", "oversize", "size", "transport")

    def __init__(self, done: asyncio.Future[bytes], max_bytes: int) -> None:
        self.done = done
        self.max_bytes = max_bytes
        self.chunks: list[bytes] = []
        self.size = 0
        self.oversize = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.size += len(data)
        if self.size > self.max_bytes:
            self.oversize = True
            self.done.set_result(b"")
            if self.transport is not None:
                self.transport.abort()
            return
        self.chunks.append(data)
        if data.endswith(b"\x00"):
            # cgminer ends every reply with NUL and closes; no need to wait for the FIN.
            self.done.set_result(b"".join(self.chunks))

    def eof_received(self) -> bool | None:
        if not self.done.done():
            self.done.set_result(b"".join(self.chunks))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(b"".join(self.chunks))
        else:
            self.done.set_exception(exc)


def _expire(done: asyncio.Future[bytes]) -> None:
    if not done.done():
        done.set_exception(TimeoutError())


@functools.lru_cache(maxsize=512)  # a poll sends the same few commands thousands of times
def _request_bytes(command: str, parameter: str | None, text_mode: bool) -> bytes:
    if text_mode:
        return (command if parameter is None else f"{command}|{parameter}").encode()
    body: dict[str, str] = {"command": command}
    if parameter is not None:
        body["parameter"] = parameter
    return json.dumps(body, separators=(",", ":")).encode()


class _ConnectDeadline:
    """`asyncio.timeout()` cut down to what the connect needs, at a third of its CPU.

    A timer cancels the task; `expired()` (called on CancelledError) says whether that
    cancellation was ours and, if so, takes it back so that only a timeout error remains.
    A cancellation from elsewhere (the rig's or the fleet's deadline) stays a cancellation,
    as with `asyncio.timeout()`: the task's cancel count decides.
    """

    __slots__ = ("_cancelling", "_fired", "_handle", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a connect deadline needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        self._fired = False
        self._handle = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def expired(self) -> bool:
        """True when our timer caused the CancelledError being handled (and nobody else)."""
        return self._fired and self._task.uncancel() <= self._cancelling

    def cancel(self) -> None:
        """Stop the timer (the connect ended one way or another)."""
        self._handle.cancel()


async def _exchange(
    host: str,
    port: int,
    command: str,
    payload: bytes,
    connect_timeout: float,
    read_timeout: float,
    max_bytes: int,
) -> bytes:
    rig = f"{host}:{port}"
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    protocol = _ReplyProtocol(done, max_bytes)
    deadline = _ConnectDeadline(loop, connect_timeout)
    try:
        transport, _ = await loop.create_connection(lambda: protocol, host, port)
    except asyncio.CancelledError:
        if deadline.expired():
            raise RpcConnectionError(
                rig, command, f"no connection within {connect_timeout:g}s"
            ) from None
        raise
    except OSError as exc:
        raise RpcConnectionError(rig, command, f"connect failed: {exc.strerror or exc}") from exc
    except (OverflowError, ValueError) as exc:  # port out of range, malformed host
        raise RpcConnectionError(rig, command, f"invalid address: {exc}") from exc
    finally:
        deadline.cancel()
    # The read deadline is a timer on our own future, not an asyncio.timeout() around the
    # task: same effect, a fraction of the cost at thousands of requests per second.
    timer = loop.call_later(read_timeout, _expire, done)
    try:
        transport.write(payload)
        try:
            raw = await done
        except TimeoutError:
            raise RpcTimeoutError(
                rig,
                command,
                f"no complete reply within {read_timeout:g}s ({protocol.size} bytes received)",
            ) from None
        except OSError as exc:
            raise RpcReplyError(
                rig, command, f"connection lost after {protocol.size} bytes: {exc}"
            ) from exc
    finally:
        timer.cancel()
        transport.abort()
    if protocol.oversize:
        raise RpcReplyError(rig, command, f"reply larger than the {max_bytes} byte cap")
    return raw


def parse_text_reply(text: str) -> dict[str, Any]:
    """Parse the plain-text API format `STATUS=S,...,Msg=..|SECTION,key=val,...|` into a dict.

    The first section becomes `STATUS: [{...}]`; each later section is grouped under its bare
    name (`SUMMARY,Elapsed=..`) or under the key of its first pair (`POOL=0,URL=..` -> `POOL`).
    Numbers become int/float; `\\,` `\\|` `\\=` escapes are honoured.
    """
    result: dict[str, Any] = {}
    for section in _split_unescaped(text.strip().rstrip("\x00"), "|"):
        if not section.strip():
            continue
        fields: dict[str, Any] = {}
        name: str | None = None
        for item in _split_unescaped(section, ","):
            key, sep, value = _partition_unescaped(item, "=")
            key = _unescape(key).strip()
            if not sep:
                if name is None and key:
                    name = key
                continue
            if name is None:
                name = key
            fields[key] = _text_value(_unescape(value))
        if name is None:
            raise ValueError(f"text reply section without a name: {section[:60]!r}")
        result.setdefault(name, []).append(fields)
    if "STATUS" not in result:
        raise ValueError("text reply has no STATUS section")
    return result


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _partition_unescaped(item: str, sep: str) -> tuple[str, str, str]:
    escaped = False
    for idx, ch in enumerate(item):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            return item[:idx], sep, item[idx + 1 :]
    return item, "", ""


def _unescape(text: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)


def _text_value(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def parse_reply(raw: bytes | str, *, rig: str = "?", command: str = "?") -> dict[str, Any]:
    """Turn raw reply bytes (JSON, malformed JSON or plain text) into a dict; RpcReplyError if not."""
    if isinstance(raw, bytes) and raw[:1] == b"{":
        # The common case, a JSON object from the first byte: no text copy just to look at it.
        return _parse_json_reply(raw.rstrip(b"\x00"), rig, command)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    stripped = text.strip().strip("\x00").strip()
    if not stripped:
        raise RpcReplyError(rig, command, "empty reply")
    if stripped[0] not in "{[" and stripped.startswith("STATUS="):
        try:
            return parse_text_reply(stripped)
        except ValueError as exc:
            raise RpcReplyError(rig, command, f"unreadable text reply: {exc}") from exc
    # The NUL terminator is framing, not a defect: strict JSON gets its chance first
    # (left in, every reply took the slow repair path).
    body = raw.rstrip(b"\x00") if isinstance(raw, bytes) else raw.rstrip("\x00")
    return _parse_json_reply(body, rig, command)


def _parse_json_reply(body: bytes | str, rig: str, command: str) -> dict[str, Any]:
    try:
        value, rules = loads_lenient(body)
    except JsonRepairError as exc:
        raise RpcReplyError(rig, command, str(exc)) from exc
    if rules:
        logger.debug("rpc repaired reply rig=%s command=%s rules=%s", rig, command, rules)
    if not isinstance(value, dict):
        raise RpcReplyError(rig, command, f"reply is a JSON {type(value).__name__}, not an object")
    return value


def status_error(reply: dict[str, Any]) -> str | None:
    """The rig's error text when its STATUS says E or F (error/fatal), else None."""
    status = reply.get("STATUS")
    if isinstance(status, list) and status and isinstance(status[0], dict):
        entry: dict[str, Any] = status[0]
    elif isinstance(status, dict):
        entry = status
    elif isinstance(status, str):  # btminer v2 puts STATUS/Code/Msg at the top level
        entry = {"STATUS": status, "Code": reply.get("Code"), "Msg": reply.get("Msg")}
    else:
        return None
    if str(entry.get("STATUS", "")).upper() in ("E", "F"):
        return f"STATUS {entry.get('STATUS')} Code {entry.get('Code')}: {entry.get('Msg')}"
    return None


async def rpc_command(
    host: str,
    port: int,
    command: str,
    parameter: str | None = None,
    *,
    connect_timeout: float = 3.0,
    read_timeout: float = 5.0,
    max_bytes: int = 4_000_000,
    text_mode: bool = False,
    check_status: bool = False,
) -> dict[str, Any]:
    """Send one command to a rig's API port and return the parsed reply.

    `text_mode` sends `command|parameter` and parses the plain-text format. With
    `check_status`, a STATUS E/F reply raises `RpcReplyError` carrying the rig's message.
    Raises `RpcConnectionError`, `RpcTimeoutError` or `RpcReplyError` (all `RpcError`).
    """
    raw = await _exchange(
        host,
        port,
        command,
        _request_bytes(command, parameter, text_mode),
        connect_timeout,
        read_timeout,
        max_bytes,
    )
    reply = parse_reply(raw, rig=f"{host}:{port}", command=command)
    if check_status:
        fault = status_error(reply)
        if fault is not None:
            raise RpcReplyError(f"{host}:{port}", command, f"rig refused: {fault}")
    return reply


def _split_joined(reply: dict[str, Any], commands: Sequence[str]) -> RpcReplies | None:
    """The per-command replies of a '+' request, or None when the rig did not honour it."""
    out = RpcReplies()
    for command in commands:
        part = reply.get(command)
        if isinstance(part, list) and part and isinstance(part[0], dict):
            out[command] = part[0]
        elif isinstance(part, dict):
            out[command] = part
        else:
            return None
    out.joined = True
    return out


async def rpc_multi(
    host: str,
    port: int,
    commands: Sequence[str],
    *,
    connect_timeout: float = 3.0,
    read_timeout: float = 5.0,
    max_bytes: int = 4_000_000,
    allow_multi: bool = True,
    parallel: bool = False,
) -> RpcReplies:
    """Run several commands; one '+'-joined request when the rig accepts it, else one each.

    The fallback covers firmwares that refuse joined commands (stock S19, btminer: STATUS E
    "Missing JSON 'command'" / "Invalid command") or answer without the per-command keys.
    Separate requests run one after another (many controllers serve one API client at a time),
    or all at once with `parallel` (one connection each; a cgminer API thread queues them and
    answers in turn, so a rig costs one device latency instead of one per command); a failure
    then raises the first failed command's error, in command order, once all have ended.
    Returns {command: reply}; `.joined` says which way it went so a driver can remember it.
    """
    unique = list(dict.fromkeys(commands))
    if allow_multi and len(unique) > 1:
        joined = "+".join(unique)
        try:
            reply = await rpc_command(
                host,
                port,
                joined,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_bytes=max_bytes,
            )
        except RpcReplyError as exc:
            logger.debug("rpc joined request unreadable rig=%s:%s fault=%s", host, port, exc.fault)
        else:
            split = _split_joined(reply, unique)
            if split is not None:
                return split
            logger.debug(
                "rpc joined request refused rig=%s:%s status=%s",
                host,
                port,
                status_error(reply) or "missing command keys",
            )
    out = RpcReplies()
    if parallel and len(unique) > 1:
        answers = await asyncio.gather(
            *(
                rpc_command(
                    host,
                    port,
                    command,
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    max_bytes=max_bytes,
                )
                for command in unique
            ),
            return_exceptions=True,
        )
        for command, answer in zip(unique, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            out[command] = answer
        return out
    for command in unique:
        out[command] = await rpc_command(
            host,
            port,
            command,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_bytes=max_bytes,
        )
    return out
