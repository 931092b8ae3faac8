"""Discovery in two stages, each with a deadline.

Stage 1 opens a bare TCP connection to every (host, port) of the range (4028 for the CGMiner-style
RPC, 80 for HTTP rigs) with high concurrency and a short connect timeout; a refused or silent port
costs one timeout at most. Stage 2 identifies only the open endpoints: which firmware family
answers there. Nothing is sent to a port in stage 1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from miners.fleet import Target

logger = logging.getLogger(__name__)

SCAN_PORTS: tuple[int, ...] = (4028, 80)
Identify = Callable[[str, int], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Found:
    """One open endpoint and what answered there (`family` None when not a rig we know)."""

    host: str
    port: int
    family: str | None
    error: str | None = None
    http_port: int | None = None  # the rig's web port when it also answered there

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "host": self.host,
            "port": self.port,
            "http_port": self.http_port,
            "family": self.family,
            "error": self.error,
        }


@dataclass(slots=True)
class ScanReport:
    """Result of a scan: the rigs found, plus the counts and times of each stage."""

    probed: int = 0
    open: list[Target] = field(default_factory=list)
    found: list[Found] = field(default_factory=list)
    stage1_s: float = 0.0
    stage2_s: float = 0.0
    stage1_unfinished: int = 0  # endpoints still connecting when the stage-1 deadline hit
    stage2_unfinished: int = 0

    @property
    def rigs(self) -> list[Found]:
        """Open endpoints identified as a known rig family."""
        return [f for f in self.found if f.family is not None]


_LINGER_RST = struct.pack("ii", 1, 0)


def _literal_address(host: str) -> tuple[int, tuple[str, int]] | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), (host, 0)


async def tcp_open(host: str, port: int, timeout_s: float) -> bool:
    """True when a TCP connection to host:port is accepted within `timeout_s`."""
    loop = asyncio.get_running_loop()
    try:
        addr: tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes]
        literal = _literal_address(host)
        if literal is not None:
            fam, addr = literal[0], (host, port)
        else:
            resolved = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s
            )
            fam, addr = resolved[0][0], resolved[0][4]
        sock = socket.socket(fam, socket.SOCK_STREAM)
    except (OSError, TimeoutError, IndexError):
        return False
    try:
        sock.setblocking(False)
        # RST on close: a scan leaves no TIME_WAIT sockets behind on either side
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, addr)
        return True
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()


async def _bounded(
    items: Sequence[Target],
    work: Callable[[Target], Awaitable[object]],
    concurrency: int,
    deadline_s: float,
) -> tuple[list[object | None], int]:
    """Run `work` over items with at most `concurrency` in flight; unfinished ones stay None."""
    results: list[object | None] = [None] * len(items)
    done = [False] * len(items)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(items):
            index = next_index
            next_index += 1
            results[index] = await work(items[index])
            done[index] = True

    tasks = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(items)))]
    if tasks:
        _done, pending = await asyncio.wait(tasks, timeout=deadline_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    return results, done.count(False)


async def default_identify(host: str, port: int) -> str | None:
    """Firmware family at host:port via `miners.detect` (None when nothing we know answers).

    The endpoint is identified on its own, by the cgminer API and by HTTP at the same time: an
    HTTP server never answers an API request (that probe would only end at its read deadline).
    """
    from miners.detect import detect_family, detect_web_family

    probes = [
        asyncio.create_task(detect_family(host, port, http_port=port)),
        asyncio.create_task(detect_web_family(host, port)),
    ]
    try:
        for next_done in asyncio.as_completed(probes):
            family = await next_done
            if family is not None:
                return family
        return None
    finally:
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)


async def identify_web(host: str, port: int) -> str | None:
    """Family behind a web port (80): HTTP probes only, an HTTP server never answers the API."""
    from miners.detect import detect_web_family

    return await detect_web_family(host, port)


def _fold_web_ports(found: list[Found], http_ports: frozenset[int]) -> list[Found]:
    """One entry per rig: a web port of a host whose RPC port is the same family folds into it."""
    out = [f for f in found if f.family is None or f.port not in http_ports]
    rpc_at = {(f.host, f.family): i for i, f in enumerate(out) if f.family is not None}
    for f in found:
        if f.family is None or f.port not in http_ports:
            continue
        i = rpc_at.get((f.host, f.family))
        if i is not None and out[i].http_port is None:
            out[i] = dataclasses.replace(out[i], http_port=f.port)
        else:
            out.append(f)  # a web-only rig (AxeOS) or a second web port
    return out


async def scan(
    targets: Iterable[Target],
    *,
    identify: Identify | None = None,
    connect_timeout_s: float = 1.0,
    identify_timeout_s: float = 3.0,
    stage1_deadline_s: float = 30.0,
    stage2_deadline_s: float = 30.0,
    concurrency: int = 1024,
    identify_concurrency: int = 256,
    http_ports: Iterable[int] = (80,),
) -> ScanReport:
    """Two-stage discovery over `targets` (see `miners.fleet.parse_targets`)."""
    items = list(dict.fromkeys(targets))
    web_ports = frozenset(http_ports)
    identify_rpc = identify or default_identify
    identify_http = identify or identify_web
    report = ScanReport(probed=len(items))

    started = time.perf_counter()

    async def probe(target: Target) -> bool:
        return await tcp_open(target.host, target.port, connect_timeout_s)

    opened, report.stage1_unfinished = await _bounded(items, probe, concurrency, stage1_deadline_s)
    report.open = [t for t, ok in zip(items, opened, strict=True) if ok is True]
    report.stage1_s = time.perf_counter() - started
    logger.info(
        "scan stage1 probed=%d open=%d unfinished=%d elapsed_s=%.2f",
        report.probed,
        len(report.open),
        report.stage1_unfinished,
        report.stage1_s,
    )

    started = time.perf_counter()

    async def ident(target: Target) -> Found:
        try:
            async with asyncio.timeout(identify_timeout_s):
                how = identify_http if target.port in web_ports else identify_rpc
                family = await how(target.host, target.port)
            return Found(target.host, target.port, family)
        except TimeoutError:
            return Found(
                target.host, target.port, None, f"no identification within {identify_timeout_s} s"
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an odd device on the range must not abort the scan
            return Found(target.host, target.port, None, f"{type(exc).__name__}: {exc}")

    found, report.stage2_unfinished = await _bounded(
        report.open, ident, identify_concurrency, stage2_deadline_s
    )
    report.found = _fold_web_ports(
        [
            f if isinstance(f, Found) else Found(t.host, t.port, None, "stage-2 deadline reached")
            for t, f in zip(report.open, found, strict=True)
        ],
        web_ports,
    )
    report.stage2_s = time.perf_counter() - started
    logger.info(
        "scan stage2 open=%d rigs=%d unfinished=%d elapsed_s=%.2f",
        len(report.open),
        len(report.rigs),
        report.stage2_unfinished,
        report.stage2_s,
    )
    return report


def scan_targets(specs: Iterable[str], ports: Iterable[int] = SCAN_PORTS) -> list[Target]:
    """Targets of a scan: specs without a port get every port in `ports`."""
    from miners.fleet import parse_targets

    return parse_targets(specs, ports)
