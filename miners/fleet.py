"""The fleet poller: one poll per rig, whole fleet inside a deadline, bounded concurrency.

A rig that fails or times out becomes `offline` with `last_seen` set to its last good read and
every live value cleared: an operator must never see an old hashrate presented as current. The
last good status is kept separately (`FleetPoller.last_good`) for reference. Identity of a rig is
its MAC: when a MAC shows up at another address the poller follows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from miners.driver import RigDriver
from miners.status import RigStatus

logger = logging.getLogger(__name__)

DEFAULT_RPC_PORT = 4028
# A CIDR wider than this is almost certainly a typo (a /8 is 16 M hosts); refuse it loudly.
MAX_TARGETS = 1 << 20

T = TypeVar("T")
DriverFactory = Callable[[str, int], Awaitable[RigDriver]]
Clock = Callable[[], datetime]


class TargetError(ValueError):
    """A target spec (HOST:PORT, HOST:LO-HI or CIDR) could not be understood."""


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One rig endpoint: host (IP or name) and TCP port."""

    host: str
    port: int = DEFAULT_RPC_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _port(text: str, spec: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise TargetError(f"target {spec!r}: port {text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise TargetError(f"target {spec!r}: port {port} outside 1-65535")
    return port


def _ports(text: str, spec: str) -> range:
    if "-" not in text:
        port = _port(text, spec)
        return range(port, port + 1)
    lo_text, hi_text = text.split("-", 1)
    lo, hi = _port(lo_text, spec), _port(hi_text, spec)
    if hi < lo:
        raise TargetError(f"target {spec!r}: port range {lo}-{hi} is reversed")
    return range(lo, hi + 1)


def _hosts(text: str, spec: str) -> list[str]:
    if "/" not in text:
        if not text:
            raise TargetError(f"target {spec!r}: empty host")
        return [text]
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise TargetError(f"target {spec!r}: bad CIDR: {exc}") from None
    if net.num_addresses > MAX_TARGETS:
        raise TargetError(
            f"target {spec!r}: {net.num_addresses} addresses is more than {MAX_TARGETS}"
        )
    # hosts() drops network/broadcast addresses; a /32 or /31 has no such split.
    hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
    return [str(h) for h in hosts]


def parse_target_spec(spec: str, ports: Iterable[int] = (DEFAULT_RPC_PORT,)) -> list[Target]:
    """Expand one spec: `HOST`, `HOST:PORT`, `HOST:LO-HI`, `CIDR` or `CIDR:PORT[-HI]`.

    `ports` is used when the spec names no port (a scan passes (4028, 80)).
    """
    spec = spec.strip()
    if not spec:
        raise TargetError("empty target")
    host_part, port_part = spec, None
    if spec.startswith("["):  # [v6addr]:port
        end = spec.find("]")
        if end < 0:
            raise TargetError(f"target {spec!r}: missing ']'")
        host_part, rest = spec[1:end], spec[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise TargetError(f"target {spec!r}: expected ':' after ']'")
            port_part = rest[1:]
    elif spec.count(":") == 1:
        host_part, port_part = spec.split(":")
    port_list = list(_ports(port_part, spec)) if port_part is not None else list(ports)
    return [Target(h, p) for h in _hosts(host_part, spec) for p in port_list]


def parse_targets(specs: Iterable[str], ports: Iterable[int] = (DEFAULT_RPC_PORT,)) -> list[Target]:
    """Expand target specs into unique targets, in the order given (see `parse_target_spec`)."""
    port_list = list(ports)
    seen: dict[Target, None] = {}
    for spec in specs:
        for target in parse_target_spec(spec, port_list):
            seen.setdefault(target, None)
            if len(seen) > MAX_TARGETS:
                raise TargetError(f"more than {MAX_TARGETS} targets")
    return list(seen)


def rig_key(status: RigStatus) -> str:
    """Stable identity of a rig: its MAC when known, else `ip:port`."""
    if status.mac:
        return status.mac.lower()
    return f"{status.ip}:{status.port}"


def offline_status(target: Target, reason: str, last_good: RigStatus | None) -> RigStatus:
    """A status for a rig without a good read: identity kept, every live value cleared.

    `last_seen` is the time of the last good read (None if never read).
    """
    if last_good is None:
        return RigStatus(
            ip=target.host,
            port=target.port,
            state="offline",
            state_reason=reason,
            errors=[reason],
        )
    return RigStatus(
        ip=target.host,
        port=target.port,
        mac=last_good.mac,
        serial=last_good.serial,
        hostname=last_good.hostname,
        family=last_good.family,
        make=last_good.make,
        model=last_good.model,
        firmware=last_good.firmware,
        state="offline",
        state_reason=reason,
        # nameplate, not a reading: still true of this rig while it is down
        expected_hashrate_ths=last_good.expected_hashrate_ths,
        errors=[reason],
        last_seen=last_good.last_seen,
    )


# A sweep allocates tens of thousands of containers per second (parsed replies, statuses), nearly
# all freed by reference counting; at the stock gen0 threshold (700) the cyclic collector runs
# ~130 times per 1,000 rigs and took 12-15 % of the poller's CPU. A sweep raises gen0 to this
# and restores the previous thresholds when the last concurrent sweep ends. It also raises the
# older generations' thresholds to SWEEP_GC_OLDER: a full collection walks every driver and
# status of the fleet (10-30 us of CPU per rig polled at 5,000 rigs in A/B runs); the young
# collections that still run catch the sweep's own cyclic garbage.
SWEEP_GC_GEN0 = 20_000
SWEEP_GC_OLDER = 1_000
_gc_sweeps = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def sweep_gc() -> Iterator[None]:
    """The cyclic GC's thresholds raised while a sweep runs (nestable; restored by the last)."""
    global _gc_sweeps, _gc_saved
    if _gc_sweeps == 0:
        _gc_saved = gc.get_threshold()
        gen0, gen1, gen2 = _gc_saved
        if gen0:  # 0 means the application disabled automatic collection: leave it so
            gc.set_threshold(
                max(gen0, SWEEP_GC_GEN0), max(gen1, SWEEP_GC_OLDER), max(gen2, SWEEP_GC_OLDER)
            )
    _gc_sweeps += 1
    try:
        yield
    finally:
        _gc_sweeps -= 1
        if _gc_sweeps == 0 and _gc_saved is not None:
            gc.set_threshold(*_gc_saved)
            _gc_saved = None


async def _default_driver_factory(host: str, port: int) -> RigDriver:
    # Imported lazily: detection pulls in every driver, the poller core does not need them.
    from miners.detect import make_driver

    return await make_driver(host, port)


@dataclass(slots=True)
class PollStats:
    """Figures of the last `poll_once` call."""

    rigs: int = 0
    online: int = 0
    offline: int = 0
    elapsed_s: float = 0.0
    deadline_hit: bool = False
    max_in_flight: int = 0

    @classmethod
    def of(
        cls, statuses: list[RigStatus], started: float, deadline_hit: bool, max_in_flight: int
    ) -> PollStats:
        """The figures of a poll that began at `started` (perf_counter) and gave `statuses`."""
        online = sum(1 for s in statuses if s.state != "offline")
        return cls(
            rigs=len(statuses),
            online=online,
            offline=len(statuses) - online,
            elapsed_s=time.perf_counter() - started,
            deadline_hit=deadline_hit,
            max_in_flight=max_in_flight,
        )


class FleetPoller:
    """Polls a fleet of targets; keeps one driver per target and the last good status per rig."""

    def __init__(
        self,
        targets: Iterable[Target],
        *,
        drivers: Mapping[Target, RigDriver] | None = None,
        driver_factory: DriverFactory | None = None,
        concurrency: int = 256,
        rig_timeout_s: float = 5.0,
        redetect_s: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if rig_timeout_s <= 0:
            raise ValueError(f"rig_timeout_s must be > 0, got {rig_timeout_s}")
        self.targets: list[Target] = list(dict.fromkeys(targets))
        self._drivers: dict[Target, RigDriver] = dict(drivers or {})
        self._factory = driver_factory or _default_driver_factory
        # An address where nothing we know answered is not probed again for `redetect_s`:
        # a CIDR target is mostly empty addresses, and each probe costs a timeout.
        self.redetect_s = redetect_s
        self._undetected: dict[Target, float] = {}  # target -> monotonic time of the failure
        self.concurrency = concurrency
        self.rig_timeout_s = rig_timeout_s
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._last_good: dict[str, RigStatus] = {}  # rig key (MAC) -> last good status
        self._key_by_target: dict[Target, str] = {}
        self._target_by_key: dict[str, Target] = {}
        self.stats = PollStats()

    def last_good(self, key_or_target: str | Target) -> RigStatus | None:
        """The last good status of a rig, by MAC/key or by its current target."""
        key = (
            self._key_by_target.get(key_or_target)
            if isinstance(key_or_target, Target)
            else key_or_target.lower()
        )
        return self._last_good.get(key) if key else None

    def target_of(self, mac: str) -> Target | None:
        """Where the rig with this MAC answered last."""
        return self._target_by_key.get(mac.lower())

    def driver(self, target: Target) -> RigDriver | None:
        """The driver for a target once it has been identified."""
        return self._drivers.get(target)

    def drivers_by_rig(self) -> dict[str, RigDriver]:
        """Driver of every rig read at least once, by rig key (MAC): what remediation takes."""
        return {
            key: driver
            for target, key in self._key_by_target.items()
            if (driver := self._drivers.get(target)) is not None
        }

    def _remember(self, target: Target, status: RigStatus) -> None:
        key = rig_key(status)
        old_target = self._target_by_key.get(key)
        if old_target is not None and old_target != target:
            # the rig moved (DHCP): its old address no longer names it
            logger.info("rig moved key=%s from=%s to=%s", key, old_target, target)
            if self._key_by_target.get(old_target) == key:
                del self._key_by_target[old_target]
        old_key = self._key_by_target.get(target)
        if old_key is not None and old_key != key and self._target_by_key.get(old_key) == target:
            # another rig now answers at this address
            del self._target_by_key[old_key]
        self._key_by_target[target] = key
        self._target_by_key[key] = target
        self._last_good[key] = status

    def _offline(self, target: Target, reason: str) -> RigStatus:
        key = self._key_by_target.get(target)
        last = self._last_good.get(key) if key else None
        return offline_status(target, reason, last)

    async def _poll_rig(self, target: Target, deadline: float) -> RigStatus:
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return self._offline(target, "fleet poll deadline reached before this rig was polled")
        timeout = min(self.rig_timeout_s, remaining)
        try:
            async with asyncio.timeout(timeout):
                driver = self._drivers.get(target)
                if driver is None:
                    failed_at = self._undetected.get(target)
                    if failed_at is not None and time.monotonic() - failed_at < self.redetect_s:
                        wait = self.redetect_s - (time.monotonic() - failed_at)
                        return self._offline(target, f"not identified; next try in {wait:.0f} s")
                    try:
                        driver = await self._factory(target.host, target.port)
                    except BaseException:  # refused, unknown firmware, or cut by the timeout
                        self._undetected[target] = time.monotonic()
                        raise
                    self._undetected.pop(target, None)
                    self._drivers[target] = driver
                status = await driver.status()
        except TimeoutError:
            return self._offline(target, f"no reply within {timeout:.2f} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a driver bug or refused connection must not sink the fleet
            return self._offline(target, f"{type(exc).__name__}: {exc}")
        if status.state in ("offline", "error"):
            # not a good read: identity and last_seen come from the last good one, no values
            failed = self._offline(target, status.state_reason or f"rig {status.state}")
            failed.state = status.state
            return failed
        status.ip, status.port = target.host, target.port
        status.last_seen = self._clock()
        self._remember(target, status)
        return status

    async def poll_once(self, deadline_s: float = 10.0) -> list[RigStatus]:
        """Poll every target once; returns one status per target in target order.

        Every rig is finished (read, or marked offline) within `deadline_s` seconds. While it
        runs, the cyclic GC's thresholds are raised (`SWEEP_GC_GEN0`, `SWEEP_GC_OLDER`; restored
        after).
        """
        with sweep_gc():
            return await self._poll_once(deadline_s)

    async def _poll_once(self, deadline_s: float) -> list[RigStatus]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        deadline = loop.time() + deadline_s
        results: list[RigStatus | None] = [None] * len(self.targets)
        next_index = 0
        max_in_flight = 0
        in_flight = 0

        async def worker() -> None:
            nonlocal next_index, max_in_flight, in_flight
            while next_index < len(self.targets):
                index = next_index
                next_index += 1
                in_flight += 1
                max_in_flight = max(max_in_flight, in_flight)
                try:
                    results[index] = await self._poll_rig(self.targets[index], deadline)
                finally:
                    in_flight -= 1

        # A fixed pool of workers is the semaphore: at most `concurrency` rigs in flight, and
        # no task per rig (5,000 idle tasks waiting on a semaphore cost more than the polls).
        workers = [
            asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(self.targets)))
        ]
        deadline_hit = False
        if workers:
            # Backstop: per-rig timeouts end at the deadline, but on a CPU-starved loop they
            # fire late; whatever still runs then is cancelled and its rig marked offline.
            left = max(0.0, deadline - loop.time())
            _done, pending = await asyncio.wait(workers, timeout=left + 0.05)
            for task in pending:
                deadline_hit = True
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=0.5)
        out: list[RigStatus] = []
        for index, target in enumerate(self.targets):
            status = results[index]
            if status is None:
                deadline_hit = True
                status = self._offline(target, "fleet poll deadline reached")
            elif (
                status.state in ("offline", "error")
                and status.mac
                and self._target_by_key.get(status.mac.lower()) not in (None, target)
            ):
                # the rig answered at another address in this same poll: this one is not it
                self._key_by_target.pop(target, None)
                state = status.state
                status = offline_status(target, status.state_reason or "no reply", None)
                status.state = state
            out.append(status)
        self.stats = PollStats.of(
            out, started, deadline_hit or loop.time() > deadline, max_in_flight
        )
        logger.info(
            "fleet poll rigs=%d online=%d offline=%d elapsed_s=%.3f",
            self.stats.rigs,
            self.stats.online,
            self.stats.offline,
            self.stats.elapsed_s,
        )
        return out


def summarize(statuses: Iterable[RigStatus]) -> dict[str, int]:
    """Counts of rigs by state (every state present, zero when none)."""
    from miners.status import RIG_STATES

    counts: dict[str, int] = dict.fromkeys(RIG_STATES, 0)
    for status in statuses:
        counts[status.state] = counts.get(status.state, 0) + 1
    return counts


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed, else on the stock asyncio loop.

    uvloop's C socket and connection handling costs about a third less CPU per rig request
    than the stock selector loop, which is what bounds a poll of thousands of rigs.
    """
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
