"""Which firmware family runs on a rig, from its `version`/`devdetails` replies and HTTP probes.

Order: the cgminer API `version` (its keys and STATUS Description name the daemon: BMMiner,
BOSminer, LUXminer, btminer, Canaan's cgminer, plain cgminer/bfgminer), then `devdetails`, then
HTTP: AxeOS answers `GET /api/system/info` with `ASICModel`; a stock Antminer web server answers
with a digest challenge in realm "antMiner Configuration".
"""

from __future__ import annotations

import json
import logging
from typing import Any

from miners.credentials import RigCredentials
from miners.driver import RigDriver, RigError
from miners.drivers.base import BaseDriver, DriverTimeouts, raw_exchange
from miners.drivers.http import HttpClient, HttpError
from miners.rpc import RpcError, rpc_command

logger = logging.getLogger(__name__)

FAMILIES = (
    "antminer",
    "braiins",
    "whatsminer",
    "whatsminer_v3",
    "avalon",
    "luxos",
    "cgminer",
    "bitaxe",
)


def family_from_version(reply: dict[str, Any]) -> str | None:
    """Family named by a `version` (or `get_version`) reply, None when it names none we know."""
    if isinstance(reply.get("Msg"), dict) and "api_ver" in reply["Msg"]:
        return "whatsminer"  # btminer API v2 `get_version`: flat STATUS, Msg.api_ver
    desc = ""
    status = reply.get("STATUS")
    if isinstance(status, list) and status and isinstance(status[0], dict):
        desc = str(status[0].get("Description", "")).lower()
    if "btminer" in desc or "whatsminer" in desc:
        return "whatsminer"
    versions = reply.get("VERSION")
    info: dict[str, Any] = versions[0] if isinstance(versions, list) and versions else {}
    keys = {k.lower() for k in info}
    if any(k.startswith("bosminer") for k in keys) or "bosminer" in desc:
        return "braiins"
    if "luxminer" in keys or "luxminer" in desc:
        return "luxos"
    prod = f"{info.get('PROD', '')} {info.get('MODEL', '')} {info.get('Type', '')}".lower()
    if "avalon" in prod:
        return "avalon"
    if "bmminer" in keys:
        return "antminer"
    if keys & {"cgminer", "bfgminer"} or desc.startswith(("cgminer", "bfgminer")):
        return "cgminer"
    return None


def family_from_devdetails(reply: dict[str, Any]) -> str | None:
    """Family named by a `devdetails` reply (driver names the daemons use)."""
    for dev in reply.get("DEVDETAILS") or []:
        driver = str(dev.get("Driver", "")).lower()
        model = str(dev.get("Model", "")).lower()
        if "avalon" in driver or "avalon" in model:
            return "avalon"
        if "bitmain" in driver or "antminer" in model:
            return "antminer"
        if "whatsminer" in model or driver == "sm":
            return "whatsminer"
    return None


async def _probe_rpc(host: str, port: int, timeout: float) -> str | None:
    for command in ("version", "get_version", "devdetails"):
        try:
            reply = await rpc_command(
                host, port, command, connect_timeout=timeout, read_timeout=timeout
            )
        except RpcError as exc:
            # No cgminer-style answer at all (refused, silent, reset, not JSON): not an RPC
            # port; asking it two more commands would only triple the wait.
            logger.debug("detect rpc %s failed rig=%s:%s err=%s", command, host, port, exc)
            return None
        found = (
            family_from_devdetails(reply) if command == "devdetails" else family_from_version(reply)
        )
        if found:
            return found
    return None


async def _probe_http(host: str, port: int, timeout: float) -> str | None:
    client = HttpClient(host, port, None, timeout=timeout)
    try:
        resp = await client.request("GET", "/api/system/info", check=False)
        if "antminer" in resp.headers.get("www-authenticate", "").lower():
            return "antminer"  # the Antminer web server challenges every path
        if resp.status == 200:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            if isinstance(body, dict) and "ASICModel" in body:
                return "bitaxe"
        resp = await client.request("GET", "/cgi-bin/get_system_info.cgi", check=False)
        if "antminer" in resp.headers.get("www-authenticate", "").lower():
            return "antminer"
    except HttpError as exc:
        logger.debug("detect http failed rig=%s:%s err=%s", host, port, exc)
    return None


async def _probe_v3(host: str, port: int, timeout: float) -> str | None:
    body = json.dumps({"cmd": "get.device.info", "param": "salt"}).encode()
    t = DriverTimeouts(connect_s=timeout, read_s=timeout)
    try:
        raw = await raw_exchange(
            host, port, len(body).to_bytes(4, "little") + body, t, length_prefixed=True
        )
        reply = json.loads(raw)
    except (RigError, ValueError) as exc:
        logger.debug("detect api v3 failed rig=%s:%s err=%s", host, port, exc)
        return None
    if isinstance(reply, dict) and isinstance(reply.get("msg"), dict) and "salt" in reply["msg"]:
        return "whatsminer_v3"
    return None


async def detect_family(
    host: str,
    port: int = 4028,
    http_port: int = 80,
    *,
    v3_port: int | None = None,
    timeout: float = 3.0,
) -> str | None:
    """The firmware family at host (RPC on `port`, web on `http_port`), None when unknown.

    `v3_port` (Whatsminer API v3, normally 4433) is only probed when given and nothing else
    answered, so a scan does not knock on a third port of every address.
    """
    found = await _probe_rpc(host, port, timeout)
    if found:
        return found
    for p in dict.fromkeys((port, http_port)):
        found = await _probe_http(host, p, timeout)
        if found:
            return found
    if v3_port is not None:
        return await _probe_v3(host, v3_port, timeout)
    return None


def driver_for(
    family: str,
    host: str,
    port: int = 4028,
    *,
    credentials: RigCredentials | None = None,
    http_port: int = 80,
    v3_port: int = 4433,
    timeouts: DriverTimeouts | None = None,
) -> BaseDriver:
    """The driver of a known family (no network traffic). Raises ValueError for unknown ones."""
    # Imported here: each driver module is only loaded when a rig of its family exists.
    kw: dict[str, Any] = {"credentials": credentials, "timeouts": timeouts}
    if family == "antminer":
        from miners.drivers.antminer import AntminerDriver

        return AntminerDriver(host, port, http_port=http_port, **kw)
    if family == "braiins":
        from miners.drivers.braiins import BraiinsDriver

        return BraiinsDriver(host, port, **kw)
    if family == "whatsminer":
        from miners.drivers.whatsminer import WhatsminerDriver

        return WhatsminerDriver(host, port, **kw)
    if family == "whatsminer_v3":
        from miners.drivers.whatsminer import WhatsminerV3Driver

        return WhatsminerV3Driver(host, v3_port if port == 4028 else port, **kw)
    if family == "avalon":
        from miners.drivers.avalon import AvalonDriver

        return AvalonDriver(host, port, **kw)
    if family == "luxos":
        from miners.drivers.luxos import LuxosDriver

        return LuxosDriver(host, port, **kw)
    if family == "cgminer":
        from miners.drivers.cgminer import CgminerDriver

        return CgminerDriver(host, port, **kw)
    if family == "bitaxe":
        from miners.drivers.bitaxe import BitaxeDriver

        return BitaxeDriver(host, http_port, **kw)
    raise ValueError(f"unknown rig family {family!r}; known: {', '.join(FAMILIES)}")


async def make_driver(
    host: str,
    port: int = 4028,
    *,
    family: str | None = None,
    credentials: RigCredentials | None = None,
    http_port: int = 80,
    v3_port: int = 4433,
    timeouts: DriverTimeouts | None = None,
) -> RigDriver:
    """A driver for the rig at host:port, detecting the family when not given.

    Raises RigError when nothing answering at the address is a firmware we know.
    """
    if family is None:
        t = (timeouts or DriverTimeouts()).connect_s
        family = await detect_family(host, port, http_port, v3_port=v3_port, timeout=t)
        if family is None:
            raise RigError(
                f"{host}:{port}",
                "no known firmware answered (cgminer API version/devdetails, AxeOS, Antminer web)",
            )
        if family == "bitaxe" and port != http_port:
            # AxeOS has no RPC: the address the caller gave is its web port
            http_port = port if port != 4028 else http_port
    return driver_for(
        family,
        host,
        port,
        credentials=credentials,
        http_port=http_port,
        v3_port=v3_port,
        timeouts=timeouts,
    )


async def detect_web_family(host: str, port: int = 80, *, timeout: float = 3.0) -> str | None:
    """The family answering HTTP on host:port (AxeOS, stock Antminer web), None when none.

    For a port known to be a web port: no cgminer-API probe, which an HTTP server never answers.
    """
    return await _probe_http(host, port, timeout)
