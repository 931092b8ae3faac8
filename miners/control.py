"""One rig, one action, by address: detect (unless told), build the driver, act, read back.

What `farmctl miners probe|curtail|resume|reboot` runs. Privileged commands exist only as driver
actions here; there is deliberately no way to send an arbitrary command to a rig.
"""

from __future__ import annotations

from typing import Literal

from miners.credentials import DEFAULT_LOGINS, RigCredentials
from miners.detect import detect_family, driver_for
from miners.driver import RigError
from miners.drivers.base import BaseDriver, DriverTimeouts
from miners.status import RigStatus

Action = Literal["probe", "curtail", "resume", "reboot"]
ACTIONS: tuple[Action, ...] = ("probe", "curtail", "resume", "reboot")


def split_rig(rig: str) -> tuple[str, int | None]:
    """`HOST[:PORT]` → (host, port or None). ValueError names a bad port."""
    host, sep, port = rig.rpartition(":")
    if not sep:
        return rig, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in {rig!r}: expected HOST[:PORT]")
    return host, int(port)


def credentials_for(
    family: str, secret: str | None, username: str | None = None
) -> RigCredentials | None:
    """Credentials for a family from a secret (None: let the driver use the factory login)."""
    if secret is None:
        return None
    user = username or DEFAULT_LOGINS.get(family, ("root", ""))[0]
    return RigCredentials.of(user, secret)


async def act_on_rig(
    rig: str,
    action: Action,
    *,
    family: str | None = None,
    http_port: int = 80,
    secret: str | None = None,
    username: str | None = None,
    timeouts: DriverTimeouts | None = None,
) -> tuple[BaseDriver, RigStatus]:
    """Run `action` on the rig at HOST[:PORT] and return (driver, status read afterwards)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    host, port = split_rig(rig)
    t = timeouts or DriverTimeouts()
    fam = family
    rpc_port = port or 4028
    if fam is None:
        fam = await detect_family(host, rpc_port, port or http_port, timeout=t.connect_s)
        if fam is None:
            raise RigError(rig, "no known firmware answered (cgminer API, AxeOS, Antminer web)")
    web_port = port if fam == "bitaxe" and port else http_port
    driver = driver_for(
        fam,
        host,
        rpc_port,
        credentials=credentials_for(fam, secret, username),
        http_port=web_port,
        timeouts=t,
    )
    if action == "curtail":
        await driver.curtail()
    elif action == "resume":
        await driver.resume()
    elif action == "reboot":
        await driver.reboot()
    else:
        driver.check_default_password()
    return driver, await driver.status()
