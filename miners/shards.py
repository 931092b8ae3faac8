"""The fleet poll spread over worker processes: one asyncio loop per CPU core.

One Python process polls about 2,000 stock Antminers per second on a 2-core gateway and is then
using all of one core: three loopback TCP connections per rig in the kernel, the event loop, the
reply parsing. Past that, the GIL is the limit, not the network. `ShardedFleetPoller` splits the
targets round-robin over `workers` processes, each running its own `FleetPoller` (drivers,
learned firmware quirks and last good statuses live in the worker), and merges the statuses
back in target order. A status crosses the process boundary pickled (~600 bytes, ~15 us of CPU
on both sides together).

A worker that dies or misses the deadline does not sink the poll: its rigs come back `offline`
with the reason and their last good identity, and the worker is started afresh for the next
poll. Workers are started with the `spawn` method (no copy of the parent's threads and locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from miners.fleet import FleetPoller, PollStats, Target, offline_status, sweep_gc
from miners.status import RigStatus

logger = logging.getLogger(__name__)

# Past the deadline, how long a worker may take to send its statuses before it counts as hung.
REPLY_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class RigSpec:
    """What a worker needs to build a rig's driver without detection: family and web port."""

    family: str
    http_port: int = 80


def _worker_main(
    conn: Connection,
    targets: list[Target],
    specs: dict[Target, RigSpec],
    concurrency: int,
    rig_timeout_s: float,
    log_level: int,
) -> None:
    """Body of a poll worker: build the drivers, then one `poll_once` per request until None."""
    import resource

    logging.basicConfig(level=log_level, format="%(levelname)-7s %(name)s: %(message)s")
    # Each rig in flight holds a socket; the parent may have raised its own limit, not ours.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from miners.detect import driver_for
    from miners.driver import RigDriver
    from miners.fleet import run_loop

    drivers: dict[Target, RigDriver] = {
        t: driver_for(spec.family, t.host, t.port, http_port=spec.http_port)
        for t, spec in specs.items()
    }
    poller = FleetPoller(
        targets, drivers=drivers, concurrency=concurrency, rig_timeout_s=rig_timeout_s
    )

    async def serve() -> None:
        while True:
            request = await asyncio.to_thread(conn.recv)
            if request is None:
                return
            statuses = await poller.poll_once(float(request))
            conn.send((statuses, poller.stats))

    try:
        run_loop(serve())
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return  # the parent went away: nothing left to poll for


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, index: int, targets: list[Target], args: tuple[Any, ...]) -> None:
        self.index = index
        self.targets = targets
        self._args = args
        self.process: Any = None
        self.conn: Connection | None = None

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, self.targets, *self._args),
            name=f"farmctl-poll-{self.index}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.conn = parent

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):  # already gone
                self.conn.send(None)
            self.conn.close()
            self.conn = None
        if self.process is not None:
            self.process.join(timeout_s)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout_s)
            self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
        self.stop(timeout_s=2.0)


def _receive(conn: Connection, timeout_s: float) -> tuple[list[RigStatus], PollStats]:
    if not conn.poll(timeout_s):
        raise TimeoutError(f"no statuses within {timeout_s:.1f} s")
    statuses, stats = conn.recv()
    return statuses, stats


class ShardedFleetPoller:
    """Polls targets from `workers` processes; same `poll_once` contract as `FleetPoller`.

    `specs` gives the family (and web port) of known rigs, so workers build their drivers
    directly; targets without a spec are detected by the worker on first contact.
    `concurrency` is the total of rigs in flight, split evenly over the workers. Workers log
    to stderr at `log_level` (default: the root logger's level here). A worker silent for
    `reply_grace_s` past the deadline counts as hung: killed, its rigs offline.
    """

    def __init__(
        self,
        targets: Iterable[Target],
        *,
        workers: int,
        specs: Mapping[Target, RigSpec] | None = None,
        concurrency: int = 256,
        rig_timeout_s: float = 5.0,
        log_level: int | None = None,
        reply_grace_s: float = REPLY_GRACE_S,
    ) -> None:
        self.targets = list(targets)
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if concurrency < workers:
            raise ValueError(f"concurrency must be >= workers ({workers}), got {concurrency}")
        if rig_timeout_s <= 0:
            raise ValueError(f"rig_timeout_s must be > 0, got {rig_timeout_s}")
        workers = min(workers, max(1, len(self.targets)))
        spec_map = dict(specs or {})
        per_worker = -(-concurrency // workers)
        level = logging.getLogger().getEffectiveLevel() if log_level is None else log_level
        self._workers: list[_Worker] = []
        for i in range(workers):
            mine = self.targets[i::workers]
            mine_specs = {t: spec_map[t] for t in mine if t in spec_map}
            args = (mine_specs, per_worker, rig_timeout_s, level)
            self._workers.append(_Worker(i, mine, args))
        self.reply_grace_s = reply_grace_s
        self._last_good: dict[Target, RigStatus] = {}
        self.stats = PollStats()

    @property
    def worker_pids(self) -> list[int | None]:
        """Process id of each worker (None before the first poll or after a failure)."""
        return [w.process.pid if w.process is not None else None for w in self._workers]

    def start(self) -> None:
        """Start every worker not running (the first `poll_once` does it when needed)."""
        for worker in self._workers:
            if worker.process is None:
                worker.start()

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        for worker in self._workers:
            worker.stop()

    def __enter__(self) -> ShardedFleetPoller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def last_good(self, target: Target) -> RigStatus | None:
        """The last good status read at `target`."""
        return self._last_good.get(target)

    async def poll_once(self, deadline_s: float = 10.0) -> list[RigStatus]:
        """Poll every target once (all workers at once); one status per target, target order."""
        # Unpickling the fleet's statuses allocates like a sweep does: the same GC setting.
        with sweep_gc():
            return await self._poll_once(deadline_s)

    async def _poll_once(self, deadline_s: float) -> list[RigStatus]:
        started = time.perf_counter()
        self.start()
        conns = [w.conn for w in self._workers if w.conn is not None]
        assert len(conns) == len(self._workers)  # start() gave every worker a pipe
        for conn in conns:
            # A dead worker refuses the request; its receive below fails, its rigs go offline.
            with contextlib.suppress(OSError):
                conn.send(deadline_s)
        wait_s = deadline_s + self.reply_grace_s
        answers = await asyncio.gather(
            *(asyncio.to_thread(_receive, conn, wait_s) for conn in conns),
            return_exceptions=True,
        )
        by_target: dict[Target, RigStatus] = {}
        deadline_hit = False
        max_in_flight = 0
        for worker, answer in zip(self._workers, answers, strict=True):
            if isinstance(answer, BaseException):
                reason = f"poll worker {worker.index} failed: {type(answer).__name__}: {answer}"
                logger.error(
                    "poll worker failed worker=%d rigs=%d error=%s",
                    worker.index,
                    len(worker.targets),
                    answer,
                )
                worker.kill()  # started afresh by the next poll
                deadline_hit = True
                for target in worker.targets:
                    by_target[target] = offline_status(target, reason, self._last_good.get(target))
                continue
            statuses, stats = answer
            deadline_hit = deadline_hit or stats.deadline_hit
            max_in_flight += stats.max_in_flight
            for target, status in zip(worker.targets, statuses, strict=True):
                by_target[target] = status
                if status.state not in ("offline", "error"):
                    self._last_good[target] = status
        out = [by_target[t] for t in self.targets]
        self.stats = PollStats.of(out, started, deadline_hit, max_in_flight)
        logger.info(
            "fleet poll rigs=%d online=%d offline=%d elapsed_s=%.3f workers=%d",
            self.stats.rigs,
            self.stats.online,
            self.stats.offline,
            self.stats.elapsed_s,
            len(self._workers),
        )
        return out
