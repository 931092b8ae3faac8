"""Daemon resource use: `farmctl run` polling 5,000 simulated rigs every 30 s, next to pyasic.

1. A simulator PROCESS (`farmctl sim`) serves 5,000 stock Antminer S19 Pro rigs (bmminer RPC and
   the web API) on 127.0.0.1.
2. `farmctl run` (its own process: poll every 30 s, reconcile every 60 s, treasury tick every
   5 min on the paper venue, SQLite) runs for WARMUP + MEASURE seconds. Its CPU time is read
   from /proc/<pid>/stat before and after the measured window (utime + stime, the whole process
   with its threads), its RSS from /proc/<pid>/status every 5 s (steady = median, peak = VmHWM).
3. The peer: pyasic 0.79 polling the same rigs at the same 30 s interval from its own process
   (`get_data()` of its stock S19 Pro class, 256 at a time, what its users run in a loop), for
   the same windows, measured the same way. It stores nothing; the daemon also writes every
   reading to SQLite and runs its other jobs.

With ../shared/data present (FARMCTL_DATA_DIR) the daemon also plans: the recorded ERCOT
LZ_WEST day-ahead and real-time prices are stored in its database first, its farm clock starts
at PLAN_AT (inside the recording, real-time speed), so the refit (RT forecaster on 180 days)
and replan jobs run with the fleet's 5,000 rigs as they would on a real-time tariff. The live
ERCOT feed points at a closed local port (the ingest job fails fast; nothing leaves the host).

Run: `python -m bench daemon` (env BENCH_DAEMON_RIGS, BENCH_DAEMON_WARMUP_S,
BENCH_DAEMON_MEASURE_S). Only 127.0.0.1 is contacted. Target (issue 7): < 15 % of one core,
< 400 MB RSS.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
FARMCTL = [str(Path(sys.executable).parent / "farmctl")]
PLAN_AT = "2025-08-20T14:00:00+00:00"  # ERCOT LZ_WEST: an August afternoon in the recording
TICKS = os.sysconf("SC_CLK_TCK")


def _env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def measure(proc: subprocess.Popen[bytes], warmup_s: float, measure_s: float) -> dict[str, float]:
    """CPU share of one core over the measured window, steady (median) and peak RSS."""
    time.sleep(warmup_s)
    if proc.poll() is not None:
        raise RuntimeError(f"process exited during warm-up ({proc.returncode})")
    cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
    rss: list[float] = []
    while time.monotonic() - wall0 < measure_s:
        rss.append(memory_mb(proc.pid)[0])
        time.sleep(5.0)
    cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
    _, peak = memory_mb(proc.pid)
    return {
        "cpu_pct": 100.0 * (cpu1 - cpu0) / (wall1 - wall0),
        "rss_mb": statistics.median(rss),
        "peak_mb": peak,
    }


def shared_data_dir() -> Path | None:
    """FARMCTL_DATA_DIR, else ../shared/data beside the repository, when it holds ERCOT."""
    raw = os.environ.get("FARMCTL_DATA_DIR")
    folder = Path(raw) if raw else REPO.parent / "shared" / "data"
    return folder if (folder / "electricity" / "ercot").is_dir() else None


def seed_prices(database_url: str, data_dir: Path) -> int:
    """Store the recorded ERCOT LZ_WEST DA and RT prices; returns rows written."""
    from datetime import datetime

    from controller.migrate import upgrade
    from controller.storage import make_engine
    from forecasting.ercot import ercot_file, load_ercot_hourly
    from forecasting.price_store import upsert_prices

    upgrade(database_url)
    engine = make_engine(database_url)
    prices = load_ercot_hourly(ercot_file(data_dir), "LZ_WEST")
    at = datetime.fromisoformat(PLAN_AT)
    written = sum(upsert_prices(engine, s, now=at) for s in (prices.day_ahead, prices.real_time))
    engine.dispose()
    return written


def daemon_config(rigs: list[dict[str, Any]], folder: Path, plan: bool = False) -> Path:
    """A farm config (TOML) with every simulated rig, state in `folder`; `plan`: a real-time
    ERCOT LZ_WEST tariff whose live feed is a closed local port (prices are seeded)."""
    lines = [
        "[farm]",
        'name = "bench"',
        f'data_dir = "{folder}"',
        'log_level = "WARNING"',
        "",
        "[[sites]]",
        'id = "bench"',
        'timezone = "America/Chicago"',
        "",
        "[database]",
        f'url = "sqlite:///{folder / "farmctl.db"}"',
        "",
        "[metrics]",
        "enabled = false",
        "",
        "[mqtt]",
        "enabled = false",
        "",
        "[scheduler]",
        "poll_interval_s = 30",
        "",
    ]
    if plan:
        lines += [
            "[electricity]",
            'market = "ercot"',
            'zone = "LZ_WEST"',
            'tariff = "real_time"',
            'api_url = "http://127.0.0.1:9"',
            "",
        ]
    for rig in rigs:
        lines += [
            "[[rigs]]",
            f'name = "rig-{rig["index"]:05d}"',
            'site = "bench"',
            f'address = "{HOST}:{rig["port"]}"',
            f"http_port = {rig['http_port']}",
            'family = "antminer"',
            f'model = "{rig["model"]}"',
            "",
        ]
    path = folder / "farm.toml"
    path.write_text("\n".join(lines))
    return path


PEER = """
import asyncio, json, sys, time
from pyasic.miners.antminer import BMMinerS19Pro

rigs = json.load(open(sys.argv[1]))["rigs"]
interval = float(sys.argv[2])

async def one(rig, sem):
    async with sem:
        miner = BMMinerS19Pro("127.0.0.1")
        miner.rpc.port = rig["port"]
        miner.web.port = rig["http_port"]
        try:
            await miner.get_data()
        except Exception:
            pass

async def main():
    sem = asyncio.Semaphore(256)
    while True:
        started = time.monotonic()
        await asyncio.gather(*(one(r, sem) for r in rigs))
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

asyncio.run(main())
"""


def main() -> None:
    """Run the daemon and the pyasic peer on the same simulated fleet; print figures and ratio."""
    n = _env("BENCH_DAEMON_RIGS", 5000)
    warmup, window = _env("BENCH_DAEMON_WARMUP_S", 75), _env("BENCH_DAEMON_MEASURE_S", 180)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        folder = Path(tmp)
        manifest = folder / "sim.json"
        sim = subprocess.Popen(
            [
                *FARMCTL,
                "sim",
                "--mix",
                f"antminer={n}",
                "--base-port",
                "0",
                "--reply-cache-s",
                "5",
                "--manifest",
                str(manifest),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            while not manifest.exists():
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise RuntimeError("simulator did not start")
                time.sleep(0.5)
            rigs = json.loads(manifest.read_text())["rigs"]
            data = shared_data_dir()
            config = daemon_config(rigs, folder, plan=data is not None)
            clock: list[str] = []
            if data is not None:
                seeded = seed_prices(f"sqlite:///{folder / 'farmctl.db'}", data)
                clock = ["--clock-start", PLAN_AT, "--clock-epoch", f"{time.time():.3f}"]
                print(f"planning on: {seeded} ERCOT LZ_WEST price rows, farm clock from {PLAN_AT}")
            else:
                print("planning off: no ../shared/data (FARMCTL_DATA_DIR) with ERCOT prices")
            results: dict[str, dict[str, float]] = {}
            log = (folder / "daemon.log").open("wb")
            daemon = subprocess.Popen(
                [*FARMCTL, "run", "--config", str(config), *clock], env=env, stdout=log, stderr=log
            )
            try:
                results["farmctl run"] = measure(daemon, warmup, window)
            finally:
                daemon.terminate()
                daemon.wait(60)
            polls = _poll_stats(folder / "farmctl.db", n)
            jobs_seen = _job_stats(folder / "farmctl.db")
            peer = subprocess.Popen(
                [sys.executable, "-c", PEER, str(manifest), "30"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                results["pyasic get_data loop"] = measure(peer, warmup, window)
            finally:
                peer.terminate()
                peer.wait(30)
        finally:
            sim.terminate()
            sim.wait(60)
    print(f"{n} rigs, poll every 30 s, warm-up {warmup} s, measured {window} s")
    print(f"daemon polls: {polls}")
    print(f"daemon jobs (runs/failures): {jobs_seen}")
    for name, r in results.items():
        print(
            f"{name:22} CPU {r['cpu_pct']:5.1f} % of one core   "
            f"RSS steady {r['rss_mb']:6.1f} MB   peak {r['peak_mb']:6.1f} MB"
        )
    ours, theirs = results["farmctl run"], results["pyasic get_data loop"]
    print(
        f"ratio farmctl/pyasic: CPU {ours['cpu_pct'] / max(theirs['cpu_pct'], 1e-9):.2f}x, "
        f"RSS {ours['rss_mb'] / theirs['rss_mb']:.2f}x"
    )
    target = ours["cpu_pct"] < 15.0 and ours["peak_mb"] < 400.0
    print(f"target (< 15 % of one core, < 400 MB): {'met' if target else 'MISSED'}")


def _poll_stats(db: Path, rigs: int) -> str:
    """How many poll runs the daemon made and how many rigs answered the last one."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        runs = conn.execute("select count(*), avg(duration_s) from job_run where job='poll'")
        count, avg = runs.fetchone()
        last = conn.execute(
            "select count(*) from rig_telemetry where time = (select max(time) from rig_telemetry)"
            " and state != 'offline'"
        ).fetchone()[0]
    return f"{count} runs, {avg or 0:.2f} s each on average, {last}/{rigs} rigs up in the last"


def _job_stats(db: Path) -> str:
    """Runs and failures per job (job_run table), to show the planning jobs really ran."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select job, count(*), sum(case when ok then 0 else 1 end) from job_run group by job"
        ).fetchall()
    return ", ".join(f"{job} {runs}/{failed}" for job, runs, failed in sorted(rows))


if __name__ == "__main__":
    main()
