"""`Simulator`: thousands of rigs of mixed families on real TCP ports of 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import random
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from miners.credentials import DEFAULT_LOGINS
from miners.sim.catalog import FAMILIES, MODELS
from miners.sim.families import HANDLERS
from miners.sim.rig import Fault, SimRig
from miners.sim.server import HttpProtocol, RpcProtocol, V3Protocol

logger = logging.getLogger(__name__)

SERIAL_PREFIX = {
    "antminer": "JYZZB4HBDJCB",
    "braiins": "SMTTB5JBDJAB",
    "whatsminer": "HKM1FS6963",
    "avalon": "1047AV0102",
    "luxos": "KTYZA7KBBJAA",
    "cgminer": "SMTTB5CGDJAB",
    "bitaxe": "BAXE401",
}
HOSTNAMES = {
    "antminer": "Antminer",
    "braiins": "bos",
    "whatsminer": "WhatsMiner",
    "avalon": "Avalon",
    "luxos": "luxos",
    "cgminer": "antMiner",
    "bitaxe": "bitaxe",
}
FREE_LOW, FREE_HIGH = 10000, 32768  # where "any free port" is looked for (see Simulator._bind)
RPC_FAMILIES = frozenset({"antminer", "braiins", "whatsminer", "avalon", "luxos", "cgminer"})
HTTP_FAMILIES = frozenset({"antminer", "bitaxe"})
V3_FAMILIES = frozenset({"whatsminer"})


def parse_mix(text: str) -> dict[str, int]:
    """`antminer=3000,whatsminer=1000` → {"antminer": 3000, "whatsminer": 1000}."""
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, count = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in MODELS:
            raise ValueError(f"bad mix entry {part!r}: expected FAMILY=COUNT, FAMILY in {FAMILIES}")
        try:
            n = int(count)
        except ValueError as exc:
            raise ValueError(f"bad count in mix entry {part!r}") from exc
        if n < 0:
            raise ValueError(f"negative count in mix entry {part!r}")
        mix[name] = mix.get(name, 0) + n
    return mix


class Simulator:
    """Rigs of mixed families answering on 127.0.0.1; `base_port=0` picks free ports itself."""

    def __init__(
        self,
        mix: Mapping[str, int] | Iterable[str],
        *,
        host: str = "127.0.0.1",
        base_port: int = 0,
        latency_ms: float = 0.0,
        ramp_up_s: float = 5.0,
        ramp_down_s: float = 1.0,
        reboot_s: float = 2.0,
        reply_cache_s: float = 1.0,
        passwords: Mapping[str, str] | None = None,
    ) -> None:
        families = (
            [f for f, n in mix.items() for _ in range(n)] if isinstance(mix, Mapping) else list(mix)
        )
        unknown = sorted(set(families) - set(MODELS))
        if unknown:
            raise ValueError(f"unknown rig families {unknown}; known: {list(FAMILIES)}")
        self.host = host
        self.base_port = base_port
        self.rigs: list[SimRig] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._next_port = base_port
        for i, family in enumerate(families):
            user, default_pw = DEFAULT_LOGINS.get(family, ("", ""))
            pw = (passwords or {}).get(family, default_pw)
            self.rigs.append(
                SimRig(
                    index=i,
                    family=family,
                    host=host,
                    port=None,
                    model=MODELS[family],
                    mac=f"02:53:{FAMILIES.index(family):02X}:{i >> 16 & 255:02X}:"
                    f"{i >> 8 & 255:02X}:{i & 255:02X}",
                    serial=f"{SERIAL_PREFIX[family]}{i:05d}",
                    hostname=f"{HOSTNAMES[family]}-{i:05d}",
                    username=user,
                    password=pw,
                    pool_user=f"farm.rig{i:05d}",
                    latency_s=latency_ms / 1000.0,
                    ramp_up_s=ramp_up_s,
                    ramp_down_s=ramp_down_s,
                    reboot_s=reboot_s,
                    reply_cache_s=reply_cache_s,
                )
            )

    def _bind(self, sock: socket.socket) -> None:
        """Bind to the next port: consecutive from `base_port`, or any free one when it is 0.

        "Any free" scans 10000-32767 from a random start instead of asking the kernel for port
        0: that range sits below Linux's ephemeral range, where bind(0) crawls once tens of
        thousands of client sockets are in TIME_WAIT (a benchmark's aftermath).
        """
        if self.base_port:
            port = self._next_port
            self._next_port += 1
            sock.bind((self.host, port))
            return
        if not self._next_port:
            self._next_port = random.randrange(FREE_LOW, FREE_HIGH)
        for _ in range(FREE_HIGH - FREE_LOW):
            port = self._next_port
            self._next_port = port + 1 if port + 1 < FREE_HIGH else FREE_LOW
            try:
                sock.bind((self.host, port))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free port left in {FREE_LOW}-{FREE_HIGH}")

    async def _serve(self, factory: Any) -> int:
        # A ready socket instead of host/port: create_server would run getaddrinfo in a worker
        # thread for every one of thousands of servers.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._bind(sock)
            sock.listen(256)
            sock.setblocking(False)
            server = await asyncio.get_running_loop().create_server(factory, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._servers.append(server)
        return int(sock.getsockname()[1])

    async def start(self) -> None:
        """Bind every rig's ports (RPC first, then HTTP and API v3 ports, in rig order)."""
        for rig in self.rigs:
            handler = HANDLERS[rig.family]
            if rig.family in RPC_FAMILIES:
                rig.port = await self._serve(lambda r=rig, h=handler: RpcProtocol(r, h))
        for rig in self.rigs:
            handler = HANDLERS[rig.family]
            if rig.family in HTTP_FAMILIES:
                rig.http_port = await self._serve(lambda r=rig, h=handler: HttpProtocol(r, h))
            if rig.family in V3_FAMILIES:
                rig.v3_port = await self._serve(lambda r=rig, h=handler: V3Protocol(r, h))
        logger.info("simulator started rigs=%d servers=%d", len(self.rigs), len(self._servers))

    async def stop(self) -> None:
        """Close every listening socket."""
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def rig(self, ref: SimRig | int | str) -> SimRig:
        """A rig by object, index, MAC or `host:port`."""
        if isinstance(ref, SimRig):
            return ref
        if isinstance(ref, int):
            return self.rigs[ref]
        for rig in self.rigs:
            if ref in (rig.mac, rig.name, f"{rig.host}:{rig.http_port}"):
                return rig
        raise KeyError(f"no simulated rig {ref!r}")

    def set_fault(self, rig: SimRig | int | str, fault: Fault | str, on: bool = True) -> None:
        """Switch a fault on (or off) for one rig."""
        self.rig(rig).set_fault(fault, on)

    def set_latency(self, rig: SimRig | int | str, latency_ms: float) -> None:
        """Delay every reply of one rig."""
        self.rig(rig).latency_s = latency_ms / 1000.0

    def sprinkle_faults(self, share: float, seed: int = 0) -> dict[int, str]:
        """Give a random `share` of rigs one fault each (deterministic for a seed)."""
        rnd = random.Random(seed)
        picked: dict[int, str] = {}
        faults = list(Fault)
        for rig in self.rigs:
            if rnd.random() < share:
                fault = rnd.choice(faults)
                rig.set_fault(fault)
                picked[rig.index] = fault.value
        return picked

    def manifest(self) -> dict[str, Any]:
        """Every rig's endpoints and identity (what `farmctl sim` prints)."""
        return {"host": self.host, "rigs": [r.manifest() for r in self.rigs]}

    def write_manifest(self, path: Path) -> None:
        """Write the manifest as JSON (atomically, so a reader never sees half a file)."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.manifest()))
        tmp.replace(path)
