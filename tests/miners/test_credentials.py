"""Secrets: md5-crypt and btminer crypto against known values, no password in logs or reprs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from miners.credentials import RigCredentials, default_credentials, is_default, warn_if_default
from miners.drivers import btminer_crypto as crypto
from miners.drivers.md5crypt import md5_crypt


@pytest.mark.parametrize(
    ("password", "salt", "expected"),
    [
        # computed with passlib's independent md5_crypt
        ("admin", "BQ5hoXV9", "$1$BQ5hoXV9$RxmaDUO33TS7O26yeMHZ81"),
        ("password", "abcdefgh", "$1$abcdefgh$G//4keteveJp0qb8z2DxG/"),
        ("", "x", "$1$x$fwjfZtMwarkdetsjiQreU1"),
        ("a" * 40, "saltsalt", "$1$saltsalt$xbcEYb2v/vQerF.rDxN620"),
    ],
)
def test_md5_crypt_known_values(password: str, salt: str, expected: str) -> None:
    assert md5_crypt(password, salt) == expected
    assert md5_crypt(password, f"$1${salt}$") == expected


def test_md5_crypt_matches_passlib_when_installed() -> None:
    passlib = pytest.importorskip("passlib.hash")
    for pw, salt in [("super", "Zt8Nq1aB"), ("Ä-unicode", "s")]:
        assert md5_crypt(pw, salt) == passlib.md5_crypt.using(salt=salt).hash(pw)


def test_btminer_token_from_the_captured_get_token(miner_responses: Path) -> None:
    msg = json.loads((miner_responses / "whatsminer/get_token.json").read_text())["Msg"]
    passwd_md5, sign = crypto.v2_token("admin", msg["time"], msg["salt"], msg["newsalt"])
    assert passwd_md5 == "RxmaDUO33TS7O26yeMHZ81"  # hash part of md5-crypt("admin", salt)
    assert sign == md5_crypt(passwd_md5 + "6915", "a5TtWui2").split("$")[3]
    key = crypto.aes_key(passwd_md5)
    assert len(key) == 32
    packet = crypto.encrypt(key, {"cmd": "power_off", "token": sign})
    assert crypto.decrypt(key, packet) == {"cmd": "power_off", "token": sign}
    with pytest.raises(ValueError, match="wrong password"):
        crypto.decrypt(crypto.aes_key("other"), packet)


def test_captured_encrypted_reply_needs_the_right_key(miner_responses: Path) -> None:
    enc = json.loads((miner_responses / "whatsminer/privileged_encrypted_reply.json").read_text())
    with pytest.raises(ValueError):
        crypto.decrypt(crypto.aes_key("not-the-key"), enc["enc"])


def test_v3_token_is_eight_base64_chars() -> None:
    token = crypto.v3_token("set.miner.service", "super", "a1b2c3d4", 1_700_000_000)
    assert len(token) == 8
    assert token == crypto.v3_token("set.miner.service", "super", "a1b2c3d4", 1_700_000_000)
    assert token != crypto.v3_token("set.miner.service", "super", "a1b2c3d4", 1_700_000_001)


def test_credentials_never_print_the_password() -> None:
    creds = RigCredentials.of("root", "Tr0ub4dor&3")
    assert "Tr0ub4dor" not in repr(creds) and "Tr0ub4dor" not in str(creds)
    assert creds.secret() == "Tr0ub4dor&3"


def test_default_password_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert is_default("antminer", default_credentials("antminer"))
    assert not is_default("antminer", RigCredentials.of("root", "changed-Pw1"))
    assert default_credentials("bitaxe") is None
    assert warn_if_default("10.0.0.7:4028", "whatsminer", RigCredentials.of("admin", "admin"))
    assert not warn_if_default("10.0.0.8:4028", "whatsminer", RigCredentials.of("admin", "x9!"))
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert "10.0.0.7:4028" in message and "whatsminer" in message
    assert "admin" in message  # the user name may show, the password may not
    assert "x9!" not in caplog.text
