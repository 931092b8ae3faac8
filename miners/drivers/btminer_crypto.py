"""The Whatsminer (btminer) privileged-API crypto, API v2 and v3.

API v2: `get_token` returns `time`, `salt`, `newsalt`. The key is md5-crypt(password, salt)'s hash
part (`host_passwd_md5`); the token is md5-crypt(host_passwd_md5 + time, newsalt)'s hash part
(`host_sign`). A privileged command is JSON with `token`, zero-padded to 16 bytes, AES-256-ECB
encrypted with sha256(host_passwd_md5), base64, sent as {"enc": 1, "data": ...}; the reply comes
back as {"enc": "<base64>"} under the same key.
API v3 (TCP 4433): a `set.*` command carries `ts`, `account` and `token` = the first 8 characters
of base64(sha256(cmd + password + salt + ts)), salt from `get.device.info` param `salt`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from miners.drivers.md5crypt import md5_crypt


def _hash_part(crypted: str) -> str:
    return crypted.split("$")[3]


def v2_token(password: str, time: str, salt: str, newsalt: str) -> tuple[str, str]:
    """(host_passwd_md5, host_sign) from the admin password and a `get_token` reply."""
    passwd_md5 = _hash_part(md5_crypt(password, salt))
    sign = _hash_part(md5_crypt(passwd_md5 + time, newsalt))
    return passwd_md5, sign


def aes_key(host_passwd_md5: str) -> bytes:
    """The AES-256 key: sha256 of host_passwd_md5."""
    return hashlib.sha256(host_passwd_md5.encode()).digest()


def encrypt(key: bytes, obj: dict[str, Any]) -> str:
    """base64(AES-256-ECB(JSON zero-padded to a 16-byte multiple))."""
    raw = json.dumps(obj).encode()
    raw += b"\x00" * (-len(raw) % 16)
    # ECB is what btminer speaks, not a choice of ours
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return base64.b64encode(enc.update(raw) + enc.finalize()).decode()


def decrypt(key: bytes, data: str) -> dict[str, Any]:
    """The JSON object inside an `enc` payload. ValueError when the key or payload is wrong."""
    try:
        blob = base64.b64decode(data)
    except ValueError as exc:
        raise ValueError("encrypted payload is not base64") from exc
    if not blob or len(blob) % 16:
        raise ValueError("encrypted payload is not a whole number of AES blocks")
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    raw = (dec.update(blob) + dec.finalize()).rstrip(b"\x00")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError("encrypted payload did not decrypt to JSON (wrong password?)") from exc
    if not isinstance(obj, dict):
        raise ValueError("encrypted payload is not a JSON object")
    return obj


def v3_token(command: str, password: str, salt: str, ts: int) -> str:
    """API v3 token for one `set.*` command at unix time `ts`."""
    digest = hashlib.sha256(f"{command}{password}{salt}{ts}".encode()).digest()
    return base64.b64encode(digest).decode()[:8]
