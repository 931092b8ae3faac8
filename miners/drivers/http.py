"""Minimal asyncio HTTP/1.1 client for rig web APIs (plain HTTP on the LAN), with digest auth.

Rig web servers are tiny (lighttpd on Antminers, esp-idf httpd on AxeOS): one request per
connection, small JSON bodies. A bare asyncio client keeps a 5,000-rig poll cheap, where a thread
per `requests` call would not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from miners.credentials import RigCredentials
from miners.driver import RigError
from miners.jsonrepair import JsonRepairError, loads_lenient


class HttpError(RigError):
    """An HTTP exchange with a rig failed (connect, timeout, bad response, status >= 400)."""


@dataclass(slots=True)
class HttpResponse:
    """Status, lower-case headers and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON (ValueError when it is not)."""
        return json.loads(self.body)


@dataclass(slots=True)
class DigestState:
    """The server's last digest challenge, reused so most requests need a single round trip."""

    realm: str = ""
    nonce: str = ""
    qop: str = ""
    opaque: str = ""
    nc: int = 0
    params: dict[str, str] = field(default_factory=dict)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_params(header: str) -> dict[str, str]:
    """The key=value pairs of a `Digest ...` challenge or `Authorization` header (lower-case keys)."""
    out: dict[str, str] = {}
    body = header.split(" ", 1)[1] if " " in header else ""
    for part in _split(body):
        key, _, value = part.partition("=")
        out[key.strip().lower()] = value.strip().strip('"')
    return out


def _split(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur).strip())
    return [p for p in parts if p]


def _digest_header(state: DigestState, creds: RigCredentials, method: str, path: str) -> str:
    state.nc += 1
    nc = f"{state.nc:08x}"
    cnonce = os.urandom(8).hex()
    ha1 = _md5(f"{creds.username}:{state.realm}:{creds.secret()}")
    ha2 = _md5(f"{method}:{path}")
    if "auth" in state.qop.split(","):
        response = _md5(f"{ha1}:{state.nonce}:{nc}:{cnonce}:auth:{ha2}")
        extra = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = _md5(f"{ha1}:{state.nonce}:{ha2}")
        extra = ""
    opaque = f', opaque="{state.opaque}"' if state.opaque else ""
    return (
        f'Digest username="{creds.username}", realm="{state.realm}", nonce="{state.nonce}", '
        f'uri="{path}", response="{response}"{extra}{opaque}'
    )


async def _once(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
    max_bytes: int,
) -> HttpResponse:
    rig = f"{host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        raise HttpError(rig, f"HTTP {method} {path}: cannot connect ({exc!r})") from exc
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        try:
            raw = await asyncio.wait_for(reader.read(max_bytes + 1), timeout)
            while raw and len(raw) <= max_bytes:
                more = await asyncio.wait_for(reader.read(max_bytes + 1 - len(raw)), timeout)
                if not more:
                    break
                raw += more
        except TimeoutError as exc:
            raise HttpError(rig, f"HTTP {method} {path}: no complete reply in {timeout}s") from exc
        except OSError as exc:
            raise HttpError(rig, f"HTTP {method} {path}: connection failed ({exc!r})") from exc
    finally:
        writer.close()
    if len(raw) > max_bytes:
        raise HttpError(rig, f"HTTP {method} {path}: reply larger than {max_bytes} bytes")
    return _parse_response(rig, method, path, raw)


def _parse_response(rig: str, method: str, path: str, raw: bytes) -> HttpResponse:
    end = raw.find(b"\r\n\r\n")
    if end < 0 or not raw.startswith(b"HTTP/"):
        raise HttpError(rig, f"HTTP {method} {path}: not an HTTP response ({raw[:40]!r})")
    lines = raw[:end].decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError) as exc:
        raise HttpError(rig, f"HTTP {method} {path}: bad status line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = raw[end + 4 :]
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return HttpResponse(status, headers, body)


class HttpClient:
    """Requests to one rig's web server; remembers the digest challenge between calls."""

    def __init__(
        self,
        host: str,
        port: int,
        credentials: RigCredentials | None = None,
        *,
        timeout: float = 5.0,
        max_bytes: int = 1_000_000,
    ) -> None:
        self.host = host
        self.port = port
        self.credentials = credentials
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._digest: DigestState | None = None

    @property
    def rig(self) -> str:
        """host:port of the web server."""
        return f"{self.host}:{self.port}"

    async def request(
        self, method: str, path: str, json_body: Any = None, *, check: bool = True
    ) -> HttpResponse:
        """One request; answers a digest challenge once. Raises HttpError on failure/status>=400."""
        body = None if json_body is None else json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        resp = await self._send(method, path, body, headers)
        if resp.status == 401 and self.credentials is not None:
            challenge = resp.headers.get("www-authenticate", "")
            if challenge.lower().startswith("digest"):
                p = digest_params(challenge)
                self._digest = DigestState(
                    realm=p.get("realm", ""),
                    nonce=p.get("nonce", ""),
                    qop=p.get("qop", ""),
                    opaque=p.get("opaque", ""),
                )
                resp = await self._send(method, path, body, headers)
        if check and resp.status == 401:
            self._digest = None
            raise HttpError(self.rig, f"HTTP {method} {path}: login refused (401)")
        if check and resp.status >= 400:
            raise HttpError(self.rig, f"HTTP {method} {path}: status {resp.status}")
        return resp

    async def _send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> HttpResponse:
        hdrs = dict(headers)
        if self._digest is not None and self.credentials is not None:
            hdrs["Authorization"] = _digest_header(self._digest, self.credentials, method, path)
        return await _once(
            self.host, self.port, method, path, body, hdrs, self.timeout, self.max_bytes
        )

    async def get_json(self, path: str) -> Any:
        """GET a JSON document."""
        resp = await self.request("GET", path)
        try:
            data, _rules = loads_lenient(resp.body)
        except JsonRepairError as exc:
            raise HttpError(self.rig, f"HTTP GET {path}: body is not JSON ({exc})") from exc
        return data
