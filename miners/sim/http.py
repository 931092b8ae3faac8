"""A small HTTP/1.1 server side for simulated rigs: request parsing, JSON replies, digest auth."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from miners.drivers.http import digest_params

HttpReply = tuple[int, dict[str, str], bytes]

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method"}
MAX_HEAD = 16 * 1024


def json_reply(obj: Any, status: int = 200) -> HttpReply:
    """A JSON body with its content type."""
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def text_reply(text: str, status: int = 200) -> HttpReply:
    """A plain text body."""
    return status, {"Content-Type": "text/plain"}, text.encode()


def encode_response(reply: HttpReply) -> bytes:
    """Serialise a reply; every connection is closed after one exchange."""
    status, headers, body = reply
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}"]
    for k, v in headers.items():
        lines.append(f"{k}: {v}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class HttpRequest:
    """One parsed request: method, path (query dropped), lower-case headers, body."""

    __slots__ = ("body", "headers", "method", "path")

    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


def parse_request(buf: bytes) -> HttpRequest | None:
    """The request in `buf`, or None while it is still incomplete. Raises ValueError when bad."""
    method_end = buf.find(b" ", 0, 9)
    if len(buf) >= 8 and (method_end < 3 or not buf[:method_end].isalpha()):
        raise ValueError("not an HTTP request")
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise ValueError("request head too large")
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    try:
        method, target, _version = head[0].split(" ", 2)
    except ValueError as exc:
        raise ValueError(f"bad request line {head[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = buf[end + 4 : end + 4 + length]
    if len(body) < length:
        return None
    return HttpRequest(method.upper(), target.split("?", 1)[0], headers, body)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def parse_digest(header: str) -> dict[str, str]:
    """The key=value pairs of an `Authorization: Digest ...` header."""
    if not header.lower().startswith("digest "):
        return {}
    return digest_params(header)


class DigestGate:
    """RFC 2617 digest auth (qop=auth, MD5) as the Antminer web server does it."""

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self.nonces: set[str] = set()

    def challenge(self) -> HttpReply:
        """A 401 with a fresh nonce."""
        nonce = secrets.token_hex(16)
        self.nonces.add(nonce)
        if len(self.nonces) > 10_000:
            self.nonces.pop()
        header = f'Digest realm="{self.realm}", nonce="{nonce}", qop="auth"'
        return 401, {"WWW-Authenticate": header, "Content-Type": "text/html"}, b"401 Unauthorized"

    def check(self, req: HttpRequest, username: str, password: str) -> bool:
        """True when the request carries a valid digest for username/password."""
        p = parse_digest(req.headers.get("authorization", ""))
        if not p or p.get("username") != username or p.get("nonce") not in self.nonces:
            return False
        ha1 = _md5(f"{username}:{self.realm}:{password}")
        ha2 = _md5(f"{req.method}:{p.get('uri', '')}")
        if p.get("qop"):
            nc, cnonce = p.get("nc", ""), p.get("cnonce", "")
            expected = _md5(f"{ha1}:{p['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        return secrets.compare_digest(expected, p.get("response", ""))
