"""Telemetry ingest through a real Mosquitto into SQLite: our batched ingest against a naive peer.

Load: `mosquitto_pub -l` processes (C, QoS 1, MQTT v5), one per rig topic, fed JSON telemetry
lines whose `ts` is stamped just before they are written. Ours: `TelemetryIngest` (manual
acks after each batch commit, INSERT ... ON CONFLICT DO NOTHING per batch). Peer: paho with its
default loop and automatic acks, one INSERT and one commit per message, the way a first
subscriber is usually written. Run: `python -m bench mqtt`.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RIGS = 4
BLAST = 60_000  # messages for the throughput run (ours)
NAIVE_BLAST = 6_000  # the naive peer is much slower; fewer messages keep the run short
PACED_RATE = 5_000  # msgs/s for the latency run
PACED_SECONDS = 4
WORKERS = 3  # ingest processes sharing one MQTT 5 shared subscription


def _line(rig: int, seq: int) -> bytes:
    body = {
        "id": f"b{rig}-{seq}",
        "ts": datetime.now(UTC).isoformat(),
        "state": "hashing",
        "mac": f"02:00:00:00:b0:{rig:02x}",
        "hashrate_ths": 100.0 + (seq % 7) / 10,
        "power_w": 3050.0,
        "boards": [
            {"index": i, "hashrate_ths": 33.4, "temp_c": 61.0 + i, "chip_temp_c": 74.0}
            for i in range(3)
        ],
        "fans_rpm": [5400, 5460, 5520, 5380],
        "uptime_s": seq,
    }
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _pub_cmd(port: int, rig: int) -> list[str]:
    return [
        "mosquitto_pub",
        "-p",
        str(port),
        "-q",
        "1",
        "-V",
        "mqttv5",
        "-M",
        "1000",
        "-l",
        "-i",
        f"bench-rig-{rig}",
        "-t",
        f"farm/bench/rig-{rig}/telemetry",
    ]


def _publishers(port: int, total: int, rate: float | None, folder: Path) -> float:
    """Send `total` messages over RIGS mosquitto_pub processes; returns the seconds it took.

    Flat out (`rate=None`) the lines are written to files first so that no Python runs on the
    sending side; paced, they are stamped and written as they go.
    """
    per_rig = total // RIGS
    if rate is None:
        files = []
        for r in range(RIGS):
            path = folder / f"lines-{r}.jsonl"
            path.write_bytes(b"".join(_line(r, s) for s in range(per_rig)))
            files.append(path.open("rb"))
        started = time.perf_counter()
        procs = [subprocess.Popen(_pub_cmd(port, r), stdin=files[r]) for r in range(RIGS)]
        for proc in procs:
            proc.wait(300)
        for fh in files:
            fh.close()
        return time.perf_counter() - started
    procs = [subprocess.Popen(_pub_cmd(port, r), stdin=subprocess.PIPE) for r in range(RIGS)]
    started = time.perf_counter()
    chunk = 25
    for start in range(0, per_rig, chunk):
        for r, proc in enumerate(procs):
            assert proc.stdin is not None
            proc.stdin.write(
                b"".join(_line(r, s) for s in range(start, min(start + chunk, per_rig)))
            )
            proc.stdin.flush()
        # pace: this many messages should have gone by now
        delay = started + (start + chunk) * RIGS / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
    for proc in procs:
        proc.wait(120)
    return time.perf_counter() - started


def _engine(path: Path) -> Any:
    import controller.mqtt.tables  # noqa: F401
    from controller.storage import make_engine
    from controller.tables import Base

    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    return engine


def _count(engine: Any) -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM rig_telemetry")).scalar_one())


def _ingest_worker(port: int, db: str, name: str, group: str, total: int, out: Any) -> None:
    """One ingest process of the shared-subscription group; reports its stats when done."""
    from controller.mqtt.client import MqttSettings
    from controller.mqtt.ingest import TelemetryIngest
    from controller.storage import make_engine

    engine = make_engine(f"sqlite:///{db}", busy_timeout_ms=30_000)
    ingest = TelemetryIngest(
        MqttSettings(port=port, client_id=name),
        engine,
        batch_size=2000,
        max_wait_s=0.02,
        shared_group=group,
    )
    ingest.start()
    ingest.mqtt.wait_ready()
    out.put(("ready", name))
    cpu_start = time.process_time()
    first = None
    idle_since = time.monotonic()
    last = 0
    while True:
        time.sleep(0.01)
        if first is None and ingest.stats.received:
            first = time.time()
        if ingest.stats.inserted != last:
            last, idle_since = ingest.stats.inserted, time.monotonic()
        if last and time.monotonic() - idle_since > 1.5:
            break
        if not last and time.monotonic() - idle_since > 300:
            break
    done = time.time()
    cpu = time.process_time() - cpu_start
    stats = ingest.stats
    ingest.stop()
    out.put(
        (
            "done",
            name,
            stats.inserted,
            stats.batches,
            cpu,
            first,
            done,
            list(stats.latencies_s),
        )
    )


def run_ours(
    port: int, folder: Path, total: int, rate: float | None, workers: int
) -> dict[str, Any]:
    """Our ingest in `workers` processes sharing one subscription: rate, batches, latency."""
    import multiprocessing as mp

    db = folder / f"ours-{rate}-{workers}.db"
    _engine(db).dispose()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    group = f"ingest{rate}{workers}"
    procs = [
        ctx.Process(
            target=_ingest_worker,
            args=(port, str(db), f"bench-ingest-{group}-{i}", group, total, out),
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        out.get(timeout=120)
    _publishers(port, total, rate, folder)
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    inserted = sum(r[2] for r in results)
    batches = sum(r[3] for r in results)
    first = min(r[5] for r in results if r[5] is not None)
    done = max(r[6] for r in results) - 1.5  # the workers idled 1.5 s before reporting
    latencies = sorted(x for r in results for x in r[7])
    engine = _engine(db)
    stored = _count(engine)
    engine.dispose()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, round(q / 100 * (len(latencies) - 1)))] * 1000

    cpu = sum(r[4] for r in results)
    return {
        "messages": total,
        "stored": stored,
        "msgs_per_s": inserted / (done - first),
        "cpu_us": cpu / max(1, inserted) * 1e6,
        "mean_batch": inserted / max(1, batches),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
    }


def run_naive(port: int, folder: Path, total: int) -> dict[str, Any]:
    """The peer: paho default loop, auto-ack, one INSERT + commit per message."""
    import paho.mqtt.client as paho
    import sqlalchemy as sa
    from paho.mqtt.enums import CallbackAPIVersion

    from controller.mqtt.tables import RigTelemetry

    engine = _engine(folder / "naive.db")
    table = RigTelemetry.__table__
    latencies: list[float] = []
    first: list[float] = []
    count = [0]
    ready = threading.Event()

    def on_message(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if not first:
            first.append(time.perf_counter())
        data = json.loads(msg.payload)
        site, rig = msg.topic.split("/")[1:3]
        ts = datetime.fromisoformat(data["ts"])
        with engine.begin() as conn:
            conn.execute(
                sa.insert(table).values(
                    msg_id=f"{site}/{rig}/{data['id']}",
                    time=ts,
                    received_at=datetime.now(UTC),
                    site=site,
                    rig=rig,
                    mac=data.get("mac"),
                    state=data["state"],
                    hashrate_ths=data.get("hashrate_ths"),
                    power_w=data.get("power_w"),
                    temp_c=max(b["temp_c"] for b in data["boards"]),
                    chip_temp_c=max(b["chip_temp_c"] for b in data["boards"]),
                )
            )
        latencies.append(time.time() - ts.timestamp())
        count[0] += 1

    cpu_start = time.process_time()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive", protocol=paho.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *a: ready.set()
    client.on_connect = lambda c, *a: c.subscribe("farm/+/+/telemetry", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    ready.wait(10)
    _publishers(port, total, None, folder)
    deadline = time.monotonic() + 300
    while count[0] < total and time.monotonic() < deadline:
        time.sleep(0.01)
    done = time.perf_counter()
    cpu = time.process_time() - cpu_start
    client.disconnect()
    client.loop_stop()
    stored = _count(engine)
    engine.dispose()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, round(q / 100 * (len(latencies) - 1)))] * 1000

    return {
        "messages": total,
        "stored": stored,
        "msgs_per_s": stored / (done - first[0]),
        # the bench process also wrote the publishers' files: an upper bound for the peer
        "cpu_us": cpu / max(1, stored) * 1e6,
        "mean_batch": 1.0,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
    }


def main() -> None:
    """Run ours (throughput, then latency at a steady rate) and the naive peer; print the ratio."""
    from tests.support.mosquitto import MosquittoBroker

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # the example config's persistence (config/mosquitto): a save every 5 s, not per message
        broker = MosquittoBroker(
            folder / "broker", extra_conf="autosave_interval 5\nautosave_on_changes false\n"
        )
        broker.workdir.mkdir(parents=True)
        broker.start()
        try:
            one = run_ours(broker.port, folder, BLAST, None, 1)
            ours = run_ours(broker.port, folder, BLAST, None, WORKERS)
            paced = run_ours(broker.port, folder, PACED_RATE * PACED_SECONDS, PACED_RATE, 1)
            naive = run_naive(broker.port, folder, NAIVE_BLAST)
        finally:
            broker.kill()
    header = (
        f"{'run':<30}{'msgs':>7}{'stored':>8}{'msg/s':>8}{'CPU us/msg':>11}{'mean batch':>11}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    )
    print(header)
    runs = [
        ("ours, 1 process, flat out", one),
        (f"ours, {WORKERS} processes, flat out", ours),
        (f"ours, paced {PACED_RATE}/s", paced),
        ("naive peer, flat out", naive),
    ]
    for name, r in runs:
        print(
            f"{name:<30}{r['messages']:>7}{r['stored']:>8}{r['msgs_per_s']:>8.0f}{r['cpu_us']:>11.0f}"
            f"{r['mean_batch']:>11.1f}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['p99_ms']:>9.1f}"
        )
    best = max(one["msgs_per_s"], ours["msgs_per_s"])
    print(f"ratio ours/naive msgs/s: {best / naive['msgs_per_s']:.1f}x")
    print(f"ratio ours/naive CPU per message: {naive['cpu_us'] / one['cpu_us']:.1f}x less")
    print(
        f"one ingest process on a free core: ~{1e6 / one['cpu_us']:.0f} msgs/s (from CPU per message)"
    )
    print(f"target >= 10,000 msgs/s measured: {'met' if best >= 10_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
