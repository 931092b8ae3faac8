"""FreeBSD MD5-crypt (`$1$salt$hash`), which btminer API v2 uses to derive its token and AES key.

The stdlib `crypt` module is deprecated (gone in 3.13) and passlib is unmaintained, so the short,
fixed algorithm (Poul-Henning Kamp, 1994) is written out here; tests check it against known vectors.
"""

from __future__ import annotations

import hashlib

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MAGIC = "$1$"


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _to64(value: int, n: int) -> str:
    out = []
    for _ in range(n):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(out)


def md5_crypt(password: str, salt: str) -> str:
    """`$1$<salt>$<22 chars>` for password and salt (salt cut to 8 chars, as the algorithm does)."""
    pw = password.encode()
    salt_b = salt.removeprefix(MAGIC).split("$", 1)[0][:8].encode()
    final = _md5(pw + salt_b + pw)
    ctx = pw + MAGIC.encode() + salt_b
    length = len(pw)
    while length > 0:
        ctx += final[: min(16, length)]
        length -= 16
    i = len(pw)
    while i:
        ctx += b"\x00" if i & 1 else pw[:1]
        i >>= 1
    final = _md5(ctx)
    for r in range(1000):
        step = pw if r & 1 else final
        if r % 3:
            step += salt_b
        if r % 7:
            step += pw
        step += final if r & 1 else pw
        final = _md5(step)
    f = final
    text = (
        _to64((f[0] << 16) | (f[6] << 8) | f[12], 4)
        + _to64((f[1] << 16) | (f[7] << 8) | f[13], 4)
        + _to64((f[2] << 16) | (f[8] << 8) | f[14], 4)
        + _to64((f[3] << 16) | (f[9] << 8) | f[15], 4)
        + _to64((f[4] << 16) | (f[10] << 8) | f[5], 4)
        + _to64(f[11], 2)
    )
    return f"{MAGIC}{salt_b.decode()}${text}"
