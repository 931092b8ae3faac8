"""asyncio Protocols serving simulated rigs: cgminer-style RPC, HTTP, Whatsminer API v3.

Kept deliberately thin per connection (no streams, cached request parsing, reply bytes cached per
second by the families) so one process can serve thousands of rigs to a fast poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, Protocol, cast

from miners.sim.http import encode_response, parse_request, text_reply
from miners.sim.rig import Fault, SimRig

if TYPE_CHECKING:
    from miners.sim.http import HttpReply, HttpRequest

logger = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
HANG_CLOSE_S = 120.0  # a hung rig drops the socket eventually, as real ones do
DRIP_BYTES = 4
DRIP_INTERVAL_S = 0.5

_parsed: dict[bytes, dict[str, Any]] = {}


class RpcHandler(Protocol):
    """The family side of the RPC port."""

    def handle(self, rig: SimRig, req: dict[str, Any], now: float) -> bytes: ...


class HttpHandler(Protocol):
    """The family side of the HTTP port."""

    def handle_http(self, rig: SimRig, req: HttpRequest, now: float) -> HttpReply: ...


class V3Handler(Protocol):
    """The family side of the Whatsminer API v3 port."""

    def handle_v3(self, rig: SimRig, req: dict[str, Any], now: float) -> dict[str, Any]: ...


def parse_rpc_request(buf: bytes) -> dict[str, Any] | None:
    """A parsed request (JSON or `command|parameter` text), or None while incomplete."""
    data = buf.strip(b"\x00\r\n\t ")
    if not data:
        return None
    hit = _parsed.get(data)
    if hit is not None:
        return hit
    req: dict[str, Any]
    if data[:1] == b"{":
        try:
            loaded = json.loads(data)
        except ValueError:
            if len(data) < MAX_REQUEST and data.count(b"{") > data.count(b"}"):
                return None  # still arriving
            loaded = {}
        req = loaded if isinstance(loaded, dict) else {}
    else:
        command, _, param = data.decode("latin-1").partition("|")
        req = {"command": command.strip(), "parameter": param or None, "_text": True}
    if len(_parsed) < 4096 and "enc" not in req and "token" not in req:
        _parsed[data] = req
    return req


def _reset(transport: asyncio.Transport) -> None:
    """Close with an RST, like a daemon that crashed mid-connection."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _RigProtocol(asyncio.Protocol):
    """Shared connection life: refuse while rebooting, faults, latency, reply delivery."""

    __slots__ = ("buf", "done", "rig", "transport")

    def __init__(self, rig: SimRig) -> None:
        self.rig = rig
        self.buf = b""
        self.done = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements Transport without subclassing it: no isinstance check
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        rig = self.rig
        if rig.down_until and time.time() < rig.down_until:
            _reset(transport)
            return
        if rig.faults:
            if Fault.RESET in rig.faults:
                _reset(transport)
            elif Fault.HANG in rig.faults:
                self.done = True
                asyncio.get_running_loop().call_later(HANG_CLOSE_S, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True

    def deliver(self, payload: bytes) -> None:
        """Send the reply (after latency, garbled or dripped when faulted) and close."""
        self.done = True
        rig = self.rig
        if Fault.GARBAGE in rig.faults:
            payload = random.Random(rig.index).randbytes(96) + b"\x00"
        if rig.latency_s > 0:
            asyncio.get_running_loop().call_later(rig.latency_s, self._send, payload)
        else:
            self._send(payload)

    def _send(self, payload: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if Fault.SLOW_DRIP in self.rig.faults:
            self._drip(payload)
            return
        t.write(payload)
        t.close()

    def _drip(self, rest: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if not rest:
            t.close()
            return
        t.write(rest[:DRIP_BYTES])
        asyncio.get_running_loop().call_later(DRIP_INTERVAL_S, self._drip, rest[DRIP_BYTES:])


class RpcProtocol(_RigProtocol):
    """cgminer-style API: one request, one NUL-terminated reply, then the daemon closes."""

    __slots__ = ("family",)

    def __init__(self, rig: SimRig, family: RpcHandler) -> None:
        super().__init__(rig)
        self.family = family

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data
        req = parse_rpc_request(self.buf)
        if req is None:
            return
        try:
            payload = self.family.handle(self.rig, req, time.time())
        except Exception:  # the simulator must keep serving other rigs
            logger.exception("sim rpc handler failed rig=%s", self.rig.name)
            payload = b'{"STATUS":[{"STATUS":"F","Code":0,"Msg":"internal"}],"id":1}\x00'
        self.deliver(payload)


class HttpProtocol(_RigProtocol):
    """One HTTP request per connection (the reply says Connection: close)."""

    __slots__ = ("family",)

    def __init__(self, rig: SimRig, family: HttpHandler) -> None:
        super().__init__(rig)
        self.family = family

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data
        try:
            req = parse_request(self.buf)
        except ValueError as exc:
            self.deliver(encode_response(text_reply(str(exc), 400)))
            return
        if req is None:
            return
        try:
            reply = self.family.handle_http(self.rig, req, time.time())
        except Exception:
            logger.exception("sim http handler failed rig=%s", self.rig.name)
            reply = text_reply("internal error", 500)
        self.deliver(encode_response(reply))


class V3Protocol(_RigProtocol):
    """Whatsminer API v3: 4-byte little-endian length, then JSON, both ways."""

    __slots__ = ("family",)

    def __init__(self, rig: SimRig, family: V3Handler) -> None:
        super().__init__(rig)
        self.family = family

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data
        if len(self.buf) < 4:
            return
        (length,) = struct.unpack("<I", self.buf[:4])
        if length > MAX_REQUEST:
            if self.transport is not None:
                _reset(self.transport)
            return
        if len(self.buf) < 4 + length:
            return
        try:
            req = json.loads(self.buf[4 : 4 + length])
            if not isinstance(req, dict):
                raise ValueError("not an object")
            reply = self.family.handle_v3(self.rig, req, time.time())
        except ValueError:
            reply = {"code": -1, "msg": "invalid json", "when": int(time.time())}
        body = json.dumps(reply, separators=(",", ":")).encode()
        self.deliver(struct.pack("<I", len(body)) + body)
