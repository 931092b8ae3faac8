"""Rig logins: secrets kept in `SecretStr`, factory defaults per family, and the default-password warning."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import SecretStr

logger = logging.getLogger(__name__)

# What each family ships with (web/API login). A rig still answering to these is a security risk.
DEFAULT_LOGINS: dict[str, tuple[str, str]] = {
    "antminer": ("root", "root"),
    "braiins": ("root", ""),
    "whatsminer": ("admin", "admin"),
    "avalon": ("root", "root"),
    "luxos": ("root", "root"),
}


@dataclass(frozen=True, slots=True)
class RigCredentials:
    """Username and password for a rig's privileged API; the password never prints."""

    username: str
    password: SecretStr

    @classmethod
    def of(cls, username: str, password: str) -> RigCredentials:
        """Wrap a plain password read from config secrets or the environment."""
        return cls(username, SecretStr(password))

    def secret(self) -> str:
        """The password itself, for the one call that sends it."""
        return self.password.get_secret_value()

    def __repr__(self) -> str:
        return f"RigCredentials(username={self.username!r}, password=**********)"


def default_credentials(family: str) -> RigCredentials | None:
    """The factory login of a family (None when the family has no login)."""
    login = DEFAULT_LOGINS.get(family)
    return RigCredentials.of(*login) if login else None


def is_default(family: str, credentials: RigCredentials | None) -> bool:
    """True when `credentials` are the family's factory login."""
    login = DEFAULT_LOGINS.get(family)
    if login is None or credentials is None:
        return False
    return (credentials.username, credentials.secret()) == login


def warn_if_default(rig: str, family: str, credentials: RigCredentials | None) -> bool:
    """Log a warning (rig and family, never the password) when the rig still uses its default login."""
    if is_default(family, credentials):
        logger.warning(
            "rig still on its factory default password rig=%s family=%s user=%s: change it",
            rig,
            family,
            credentials.username if credentials else "",
        )
        return True
    return False
