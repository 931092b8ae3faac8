"""Fleet poll benchmark: our poller against pyasic 0.79 on the same simulated fleet, same run.

1. A simulator PROCESS serves 5,000 stock Antminer S19 Pro rigs (bmminer replies to summary,
   stats and pools; the web API for identity) on 127.0.0.1, zero device latency.
   It rebuilds a read reply at most every BENCH_MINERS_REPLY_CACHE_S seconds (default 5): the
   rigs' own CPU is not the gateway's, but here the simulator shares our two cores.
2. Our `FleetPoller` polls them into full `RigStatus` objects: one cold sweep (detection-free
   drivers, web identity loaded once per rig), then warm sweeps; rigs/s and our peak RSS. Then
   `ShardedFleetPoller` does the same from BENCH_MINERS_WORKERS (default 2) worker processes,
   one per core: rigs/s, CPU per rig of workers, parent and simulator, RSS of every process.
3. pyasic polls the same rigs: `get_data()` of its stock S19 Pro class (RPC + web, what its
   users call), and its bare RPC layer (`BMMinerRPCAPI.multicommand("summary","stats","pools")`,
   replies as dicts, no parsing). pyasic takes an IP only; its RPC and web ports are set on the
   instances so it reaches the same simulated rigs.
4. 10,000 rigs with 200 ms device latency (two simulator processes: one process's file limit
   holds 5,000 rigs' RPC and web listeners): time of one warm sweep, with each rig's three
   commands sent at once (`AntminerDriver.parallel_commands`; BENCH_MINERS_SWEEP_PARALLEL=0: not).

Run: `python -m bench miners` (env BENCH_MINERS_RIGS, BENCH_MINERS_SWEEP_RIGS,
BENCH_MINERS_PYASIC_RIGS to change the sizes). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SIM_PIDS: list[int] = []


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_of_mb(pid: int) -> float:
    """Peak RSS (VmHWM) of a live process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def _sim_main(count: int, latency_ms: float, manifest: str, reply_cache_s: float = 1.0) -> None:
    """Body of a simulator process: serve `count` stock Antminers until terminated."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from miners.fleet import run_loop
    from miners.sim.simulator import Simulator

    async def serve() -> None:
        sim = Simulator({"antminer": count}, latency_ms=latency_ms, reply_cache_s=reply_cache_s)
        await sim.start()
        sim.write_manifest(Path(manifest))
        await asyncio.Event().wait()

    run_loop(serve())


@contextlib.contextmanager
def simulator_processes(
    count: int, latency_ms: float, processes: int = 1, reply_cache_s: float = 1.0
) -> Iterator[list[dict]]:
    """Start simulator process(es) serving `count` rigs in all; yields the rigs' manifest rows.

    The processes' pids are in `SIM_PIDS` while they run (the bench reports their CPU)."""
    ctx = multiprocessing.get_context("spawn")
    tmp = tempfile.mkdtemp(prefix="bench-miners-")
    procs: list[Any] = []
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    try:
        paths = []
        for i, share in enumerate(shares):
            path = os.path.join(tmp, f"manifest-{i}.json")
            proc = ctx.Process(
                target=_sim_main, args=(share, latency_ms, path, reply_cache_s), daemon=True
            )
            proc.start()
            procs.append(proc)
            SIM_PIDS.append(proc.pid or 0)  # set once started
            paths.append(path)
            # one at a time: two processes picking free ports at once can both bind one
            deadline = time.monotonic() + 300
            while not os.path.exists(path):
                if time.monotonic() > deadline or not proc.is_alive():
                    raise RuntimeError("simulator process did not start (see its stderr)")
                time.sleep(0.2)
        rigs: list[dict] = []
        for path in paths:
            rigs.extend(json.loads(Path(path).read_text())["rigs"])
        yield rigs
    finally:
        SIM_PIDS.clear()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(10)
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


def _full_statuses(statuses: list[Any]) -> int:
    """How many statuses are complete reads of a hashing S19 Pro (3 boards, 4 fans, pools)."""
    return sum(
        1
        for s in statuses
        if s.state == "hashing"
        and s.mac
        and s.hashrate_ths
        and len(s.boards) == 3
        and len(s.fans_rpm) == 4
        and s.pools
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


async def _ours(
    rigs: list[dict],
    *,
    concurrency: int,
    warm_rounds: int,
    deadline_s: float,
    rig_timeout_s: float = 5.0,
    parallel_commands: bool = False,
) -> dict[str, Any]:
    from miners.detect import driver_for
    from miners.driver import RigDriver
    from miners.drivers.antminer import AntminerDriver
    from miners.fleet import FleetPoller, Target

    drivers: dict[Target, RigDriver] = {}
    for r in rigs:
        driver = driver_for("antminer", HOST, r["port"], http_port=r["http_port"])
        assert isinstance(driver, AntminerDriver)
        driver.parallel_commands = parallel_commands
        drivers[Target(HOST, r["port"])] = driver
    poller = FleetPoller(
        list(drivers), drivers=drivers, concurrency=concurrency, rig_timeout_s=rig_timeout_s
    )
    started = time.perf_counter()
    cold = await poller.poll_once(deadline_s)
    cold_s = time.perf_counter() - started
    warm_times: list[float] = []
    statuses = cold
    cpu_started = time.process_time()
    for _ in range(warm_rounds):
        started = time.perf_counter()
        statuses = await poller.poll_once(deadline_s)
        warm_times.append(time.perf_counter() - started)
    cpu_s = time.process_time() - cpu_started
    full = _full_statuses(statuses)
    return {
        "rigs": len(rigs),
        "cold_s": cold_s,
        "cold_ok": sum(1 for s in cold if s.state == "hashing"),
        "warm_s": warm_times,
        "warm_ok": full,
        "rigs_per_s": len(rigs) / statistics.median(warm_times) if warm_times else 0.0,
        "rigs_per_cpu_s": len(rigs) * warm_rounds / cpu_s if cpu_s > 0 else 0.0,
    }


async def _ours_sharded(
    rigs: list[dict], *, workers: int, concurrency: int, warm_rounds: int, deadline_s: float
) -> dict[str, Any]:
    """`ShardedFleetPoller`: the same fleet from `workers` processes; CPU of every process."""
    import logging

    from miners.fleet import Target
    from miners.shards import RigSpec, ShardedFleetPoller

    targets = [Target(HOST, r["port"]) for r in rigs]
    specs = {Target(HOST, r["port"]): RigSpec("antminer", r["http_port"]) for r in rigs}
    with ShardedFleetPoller(
        targets,
        workers=workers,
        specs=specs,
        concurrency=concurrency,
        log_level=logging.ERROR,  # default-password warnings x 5,000 are not the point here
    ) as poller:
        started = time.perf_counter()
        cold = await poller.poll_once(deadline_s)
        cold_s = time.perf_counter() - started
        pids = [p for p in poller.worker_pids if p is not None]
        sims = list(SIM_PIDS)
        cpu0 = [_cpu_s(p) for p in pids] + [_cpu_s(p) for p in sims] + [time.process_time()]
        warm_times: list[float] = []
        statuses = cold
        for _ in range(warm_rounds):
            started = time.perf_counter()
            statuses = await poller.poll_once(deadline_s)
            warm_times.append(time.perf_counter() - started)
        cpu1 = [_cpu_s(p) for p in pids] + [_cpu_s(p) for p in sims] + [time.process_time()]
        worker_rss = [_peak_rss_of_mb(p) for p in pids]
    polled = len(rigs) * warm_rounds
    used = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    workers_cpu, sim_cpu, parent_cpu = (
        sum(used[: len(pids)]),
        sum(used[len(pids) : -1]),
        used[-1],
    )
    full = _full_statuses(statuses)
    return {
        "rigs": len(rigs),
        "workers": len(pids),
        "cold_s": cold_s,
        "cold_ok": sum(1 for s in cold if s.state == "hashing"),
        "warm_s": warm_times,
        "warm_ok": full,
        "rigs_per_s": len(rigs) / statistics.median(warm_times),
        "us_per_rig_workers": 1e6 * workers_cpu / polled,
        "us_per_rig_parent": 1e6 * parent_cpu / polled,
        "us_per_rig_sim": 1e6 * sim_cpu / polled,
        "rss_mb": _peak_rss_mb() + sum(worker_rss),
        "rss_workers_mb": worker_rss,
    }


async def _bounded(n: int, concurrency: int, one: Any) -> tuple[float, int]:
    """Run one(i) for i in range(n) with `concurrency` workers; (seconds, successes)."""
    next_i = 0
    ok = 0

    async def worker() -> None:
        nonlocal next_i, ok
        while next_i < n:
            i = next_i
            next_i += 1
            try:
                if await one(i):
                    ok += 1
            except Exception:  # pyasic raises on a reply it cannot read; count it as a miss
                pass

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, ok


async def _pyasic_get_data(rigs: list[dict], concurrency: int) -> dict[str, Any]:
    from pyasic.miners.antminer import BMMinerS19Pro

    async def one(i: int) -> bool:
        miner = BMMinerS19Pro(HOST)
        miner.rpc.port = rigs[i]["port"]
        miner.web.port = rigs[i]["http_port"]
        data = await miner.get_data()
        return bool(data.hashrate) and len(data.fans) == 4

    cpu_started = time.process_time()
    seconds, ok = await _bounded(len(rigs), concurrency, one)
    cpu_s = time.process_time() - cpu_started
    return {
        "rigs": len(rigs),
        "s": seconds,
        "ok": ok,
        "rigs_per_s": len(rigs) / seconds,
        "rigs_per_cpu_s": len(rigs) / cpu_s if cpu_s > 0 else 0.0,
    }


async def _pyasic_rpc(rigs: list[dict], concurrency: int) -> dict[str, Any]:
    from pyasic.rpc.bmminer import BMMinerRPCAPI

    async def one(i: int) -> bool:
        api = BMMinerRPCAPI(HOST, port=rigs[i]["port"])
        data = await api.multicommand("summary", "stats", "pools", allow_warning=False)
        return all(data.get(c) for c in ("summary", "stats", "pools"))

    cpu_started = time.process_time()
    seconds, ok = await _bounded(len(rigs), concurrency, one)
    cpu_s = time.process_time() - cpu_started
    return {
        "rigs": len(rigs),
        "s": seconds,
        "ok": ok,
        "rigs_per_s": len(rigs) / seconds,
        "rigs_per_cpu_s": len(rigs) / cpu_s if cpu_s > 0 else 0.0,
    }


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def main() -> None:
    """Run our poller and pyasic on the same simulated fleets; print figures and the ratio."""
    import logging

    logging.disable(logging.WARNING)  # default-password warnings x 5,000 are not the point here
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = _env_int("BENCH_MINERS_RIGS", 5000)
    n_pyasic = _env_int("BENCH_MINERS_PYASIC_RIGS", n)
    n_sweep = _env_int("BENCH_MINERS_SWEEP_RIGS", 10000)

    try:
        import uvloop

        loop_name = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop_name = "asyncio"
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, event loop {loop_name} "
        f"(ours, pyasic and the simulator alike), load average {os.getloadavg()[0]:.1f} "
        "(the machine is shared: wall-clock rates fall with load, CPU-time rates much less)"
    )

    parts = os.environ.get("BENCH_MINERS_PARTS", "fleet,pyasic,sweep").split(",")
    sweep_concurrency = _env_int("BENCH_MINERS_SWEEP_CONCURRENCY", 2000)
    if "fleet" in parts:
        workers = _env_int("BENCH_MINERS_WORKERS", 2)
        _fleet_vs_pyasic(n, n_pyasic, with_pyasic="pyasic" in parts, workers=workers)
    if "sweep" in parts:
        # the sweep sends a rig's three commands at once (AntminerDriver.parallel_commands):
        # one 200 ms device latency per rig instead of three; BENCH_MINERS_SWEEP_PARALLEL=0 not
        _sweep(n_sweep, sweep_concurrency, os.environ.get("BENCH_MINERS_SWEEP_PARALLEL") != "0")


def _fleet_vs_pyasic(n: int, n_pyasic: int, *, with_pyasic: bool, workers: int) -> None:
    from miners.fleet import run_loop

    # The rigs' own CPU is not the gateway's, but here the simulator shares our two cores: it
    # rebuilds a read reply at most every BENCH_MINERS_REPLY_CACHE_S seconds (default 5, the
    # window of bmminer's `GHS 5s`), the same for us and for pyasic.
    cache_s = float(os.environ.get("BENCH_MINERS_REPLY_CACHE_S", "5.0"))
    print(f"simulator: {n} stock S19 Pro rigs, one process, replies rebuilt every {cache_s:g} s")
    with simulator_processes(n, 0.0, reply_cache_s=cache_s) as rigs:
        sim_cpu0 = sum(_cpu_s(p) for p in SIM_PIDS)
        ours = run_loop(_ours(rigs, concurrency=256, warm_rounds=3, deadline_s=60.0))
        gc.collect()
        rss = _peak_rss_mb()
        print(
            f"ours, one process: {n} rigs, cold sweep {ours['cold_s']:.2f} s "
            f"({ours['cold_ok']} hashing), "
            f"warm sweeps {', '.join(f'{t:.2f}' for t in ours['warm_s'])} s, "
            f"{ours['warm_ok']} full RigStatus; {ours['rigs_per_s']:.0f} rigs/s "
            f"({ours['rigs_per_cpu_s']:.0f} rigs per CPU-second); peak RSS {rss:.0f} MB; "
            f"simulator {1e6 * (sum(_cpu_s(p) for p in SIM_PIDS) - sim_cpu0) / (4 * n):.0f} us "
            "CPU per rig (cold and warm sweeps)"
        )
        sharded: dict[str, Any] | None = None
        if workers > 1:
            sharded = run_loop(
                _ours_sharded(
                    rigs,
                    workers=workers,
                    concurrency=256,  # in all, as `farmctl miners poll --workers` has it
                    warm_rounds=5,
                    deadline_s=60.0,
                )
            )
            print(
                f"ours, {sharded['workers']} poll worker processes (ShardedFleetPoller): "
                f"cold sweep {sharded['cold_s']:.2f} s ({sharded['cold_ok']} hashing), "
                f"warm sweeps {', '.join(f'{t:.2f}' for t in sharded['warm_s'])} s, "
                f"{sharded['warm_ok']} full RigStatus; {sharded['rigs_per_s']:.0f} rigs/s; "
                f"CPU per rig: workers {sharded['us_per_rig_workers']:.0f} us, "
                f"parent {sharded['us_per_rig_parent']:.0f} us, "
                f"simulator {sharded['us_per_rig_sim']:.0f} us; "
                f"peak RSS parent + workers {sharded['rss_mb']:.0f} MB "
                f"(workers {', '.join(f'{m:.0f}' for m in sharded['rss_workers_mb'])})"
            )
        if not with_pyasic:
            return
        import pyasic

        sub = rigs[:n_pyasic]
        rpc = run_loop(_pyasic_rpc(sub, concurrency=256))
        print(
            f"pyasic {pyasic.__version__ if hasattr(pyasic, '__version__') else '0.79'} "
            f"bare RPC (multicommand summary+stats+pools): {rpc['rigs']} rigs in {rpc['s']:.2f} s "
            f"({rpc['ok']} ok), {rpc['rigs_per_s']:.0f} rigs/s "
            f"({rpc['rigs_per_cpu_s']:.0f} rigs per CPU-second)"
        )
        data = run_loop(_pyasic_get_data(sub, concurrency=256))
        print(
            f"pyasic get_data: {data['rigs']} rigs in {data['s']:.2f} s ({data['ok']} ok), "
            f"{data['rigs_per_s']:.0f} rigs/s ({data['rigs_per_cpu_s']:.0f} rigs per CPU-second)"
        )
        print(
            f"ratio wall-clock: ours / pyasic get_data = "
            f"{ours['rigs_per_s'] / data['rigs_per_s']:.1f}x, "
            f"ours / pyasic bare RPC = {ours['rigs_per_s'] / rpc['rigs_per_s']:.1f}x; "
            f"per CPU-second: {ours['rigs_per_cpu_s'] / data['rigs_per_cpu_s']:.1f}x and "
            f"{ours['rigs_per_cpu_s'] / rpc['rigs_per_cpu_s']:.1f}x"
        )
        if sharded is not None:
            print(
                f"ratio wall-clock, {sharded['workers']} poll workers: ours / pyasic get_data = "
                f"{sharded['rigs_per_s'] / data['rigs_per_s']:.1f}x, ours / pyasic bare RPC = "
                f"{sharded['rigs_per_s'] / rpc['rigs_per_s']:.1f}x"
            )


def _sweep(n_sweep: int, concurrency: int, parallel: bool) -> None:
    from miners.fleet import run_loop

    with simulator_processes(n_sweep, 200.0, processes=2) as rigs:
        sweep = run_loop(
            _ours(
                rigs,
                concurrency=concurrency,
                warm_rounds=1,
                deadline_s=10.0,
                rig_timeout_s=10.0,
                parallel_commands=parallel,
            )
        )
        print(
            f"ours: {n_sweep} rigs at 200 ms device latency, concurrency {concurrency}, "
            f"{'parallel' if parallel else 'sequential'} commands per rig, "
            f"deadline 10 s: cold sweep {sweep['cold_s']:.2f} s "
            f"({sweep['cold_ok']} hashing), warm sweep {sweep['warm_s'][0]:.2f} s "
            f"({sweep['warm_ok']} full RigStatus); peak RSS {_peak_rss_mb():.0f} MB"
        )


if __name__ == "__main__":
    main()
