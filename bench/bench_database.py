"""Telemetry write rate on PostgreSQL (day-partitioned rig_telemetry) and SQLite, against a naive peer.

Ours: the gateway's real write path, `Gateway._store_poll`, with one synthetic `RigStatus` per
rig per poll (the poll's telemetry by COPY on PostgreSQL or one multi-row INSERT on SQLite, plus
the bulk `last_seen` UPDATE, one transaction per poll), and the MQTT ingest's batch write (`insert_ignoring_duplicates`, 1,000
rows per INSERT ... ON CONFLICT DO NOTHING). Peer: the same rows written the way a first
implementation usually is: one ORM object and one INSERT per row (`session.add` + `flush`), one
commit per poll. Polls are 30 s apart in farm time, so every row lands in today's partition
the way a running gateway's do. Size: `pg_total_relation_size` over the table's partitions
(heap, TOAST, primary key and the site/rig/time index), per row and per million rows.

Run: `python -m bench database` (BENCH_DB_RIGS, BENCH_DB_POLLS and BENCH_DB_NAIVE_POLLS change
the load). Needs PostgreSQL on 127.0.0.1:5432 (database `test`, trust auth); a fresh schema is
made and dropped.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any, cast

import sqlalchemy as sa

from controller import migrate
from controller.config import FarmConfig, parse_config
from controller.gateway import Gateway
from controller.mqtt.dedup import insert_ignoring_duplicates
from controller.mqtt.tables import RigTelemetry
from controller.tables import RigRecord
from miners.status import BoardStatus, RigStatus

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLE = cast(sa.Table, RigTelemetry.__table__)
SITES = ("north", "south")


def _env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _config(rigs: int, url: str, folder: Path) -> FarmConfig:
    raw = {
        "farm": {"name": "bench", "data_dir": str(folder)},
        "sites": [{"id": s} for s in SITES],
        "rigs": [
            {
                "name": f"rig-{i:05d}",
                "site": SITES[i % len(SITES)],
                "address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:4028",
                "family": "antminer",
            }
            for i in range(rigs)
        ],
        "database": {"url": url},
        "metrics": {"enabled": False},
        "mqtt": {"enabled": False},
    }
    return parse_config(raw, folder / "farm.toml")


def _statuses(rigs: int, poll: int) -> dict[str, RigStatus]:
    statuses = {}
    for i in range(rigs):
        statuses[f"rig-{i:05d}"] = RigStatus(
            mac=f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            state="hashing",
            hashrate_ths=104.0 + (i + poll) % 9 / 10,
            power_w=3250.0 + (i * 7 + poll) % 40,
            power_source="reported",
            boards=[
                BoardStatus(index=b, hashrate_ths=34.7, temp_c=62.0 + b, chip_temp_c=75.0 + b)
                for b in range(3)
            ],
        )
    return statuses


def _row(status: RigStatus, name: str, site: str, now: datetime) -> dict[str, Any]:
    # the row `_store_poll` builds, for the naive peer and the ingest path
    return {
        "msg_id": f"poll:{name}:{now.isoformat()}",
        "time": now,
        "received_at": now,
        "site": site,
        "rig": name,
        "mac": status.mac,
        "state": status.state,
        "hashrate_ths": status.hashrate_ths,
        "power_w": status.power_w,
        "power_source": status.power_source,
        "temp_c": max(b.temp_c for b in status.boards if b.temp_c is not None),
        "chip_temp_c": max(b.chip_temp_c for b in status.boards if b.chip_temp_c is not None),
    }


@contextmanager
def _postgres_schema() -> Iterator[str]:
    admin = sa.create_engine(PG_BASE)
    schema = f"bench_db_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _timed_polls(
    polls: int, write: Callable[[int, datetime], None], start: datetime
) -> list[float]:
    seconds = []
    for poll in range(polls):
        began = time.perf_counter()
        write(poll, start + timedelta(seconds=30 * poll))
        seconds.append(time.perf_counter() - began)
    return seconds


def _table_bytes(engine: sa.Engine) -> tuple[int, int, int]:
    """(bytes on disk, of which indexes, rows) of rig_telemetry with every partition."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            size, indexes = conn.execute(
                sa.text(
                    "SELECT sum(pg_total_relation_size(relid)), sum(pg_indexes_size(relid))"
                    " FROM pg_partition_tree('rig_telemetry')"
                )
            ).one()
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size, indexes = conn.exec_driver_sql(
                "SELECT sum(d.pgsize), sum(CASE WHEN m.type = 'index' THEN d.pgsize END)"
                " FROM dbstat d JOIN sqlite_master m ON m.name = d.name"
                " WHERE m.tbl_name = 'rig_telemetry'"
            ).one()
        rows = conn.execute(sa.text("SELECT count(*) FROM rig_telemetry")).scalar_one()
    return int(size or 0), int(indexes or 0), int(rows)


def measure(url: str, folder: Path, rigs: int, polls: int, naive_polls: int) -> dict[str, Any]:
    """Rows/s of our poll write, the ingest batch write and the naive peer on one database."""
    migrate.upgrade(url)
    gateway = Gateway(_config(rigs, url, folder), base_dir=folder)
    gateway._sync_inventory()
    site_of = {r.name: r.site for r in gateway.rigs}
    start = datetime.now(UTC).replace(microsecond=0)
    # first poll learns every rig's MAC (one-off inventory writes), as in a running gateway
    gateway._store_poll(_statuses(rigs, -1), start - timedelta(seconds=30))
    prepared = [_statuses(rigs, p) for p in range(max(polls, naive_polls))]

    ours = _timed_polls(polls, lambda p, now: gateway._store_poll(prepared[p], now), start)

    insert_start = start + timedelta(seconds=30 * polls)

    def poll_by_insert(poll: int, now: datetime) -> None:
        # the poll write before COPY: same rows, same last_seen update, one multi-row INSERT
        rows = [_row(s, n, site_of[n], now) for n, s in prepared[poll].items()]
        with gateway.sessions.begin() as session:
            session.execute(sa.insert(RigTelemetry), rows)
            session.execute(
                sa.update(RigRecord).where(RigRecord.name.in_(list(site_of))).values(last_seen=now)
            )

    by_insert = _timed_polls(polls, poll_by_insert, insert_start)

    ingest_start = insert_start + timedelta(seconds=30 * polls)

    def ingest(poll: int, now: datetime) -> None:
        rows = [_row(s, n, site_of[n], now) for n, s in prepared[poll].items()]
        rows = [{**r, "msg_id": "mqtt" + r["msg_id"]} for r in rows]
        for first in range(0, len(rows), 1000):
            with gateway.engine.begin() as conn:
                insert_ignoring_duplicates(conn, TABLE, rows[first : first + 1000])

    batch = _timed_polls(polls, ingest, ingest_start)
    size, index_bytes, stored = _table_bytes(gateway.engine)

    naive_start = ingest_start + timedelta(seconds=30 * polls)

    def naive(poll: int, now: datetime) -> None:
        with gateway.sessions.begin() as session:
            for name, status in prepared[poll].items():
                session.add(RigTelemetry(**_row(status, name, site_of[name], now)))
                session.flush()  # one INSERT per row

    slow = _timed_polls(naive_polls, naive, naive_start)
    gateway.engine.dispose()
    return {
        "ours_s": median(ours),
        "insert_s": median(by_insert),
        "batch_s": median(batch),
        "naive_s": median(slow),
        "bytes": size,
        "index_bytes": index_bytes,
        "rows": stored,
    }


def _report(name: str, rigs: int, m: dict[str, Any]) -> None:
    ours, batch, naive = rigs / m["ours_s"], rigs / m["batch_s"], rigs / m["naive_s"]
    per_row = m["bytes"] / m["rows"]
    print(f"{name}: {rigs:,} rigs per poll, median of the timed polls")
    print(f"  gateway _store_poll   {m['ours_s'] * 1000:8.0f} ms/poll  {ours:9,.0f} rows/s")
    by_insert = rigs / m["insert_s"]
    print(f"  poll write by INSERT  {m['insert_s'] * 1000:8.0f} ms/poll  {by_insert:9,.0f} rows/s")
    print(f"  ingest batch (1,000)  {m['batch_s'] * 1000:8.0f} ms/poll  {batch:9,.0f} rows/s")
    print(f"  naive ORM row by row  {m['naive_s'] * 1000:8.0f} ms/poll  {naive:9,.0f} rows/s")
    print(f"  ratio ours / naive: poll path {ours / naive:.1f}x, ingest path {batch / naive:.1f}x")
    print(
        f"  size: {m['bytes'] / 1e6:.1f} MB for {m['rows']:,} rows = {per_row:.0f} B/row,"
        f" {per_row * 1e6 / 1e9:.2f} GB per million rows"
        f" (indexes {m['index_bytes'] / m['rows']:.0f} B/row of it)"
    )


def main() -> None:
    """Measure PostgreSQL (partitioned) and SQLite, print rows/s, ratios and bytes per row."""
    rigs = _env("BENCH_DB_RIGS", 5_000)
    polls = _env("BENCH_DB_POLLS", 20)
    naive_polls = _env("BENCH_DB_NAIVE_POLLS", 3)
    print(f"{rigs:,} rigs, {polls} polls ours, {naive_polls} polls naive (30 s apart, farm time)")
    with tempfile.TemporaryDirectory() as scratch, _postgres_schema() as url:
        folder = Path(scratch)
        with sa.create_engine(PG_BASE).connect() as conn:
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        _report(
            f"PostgreSQL {version} (day partitions)",
            rigs,
            measure(url, folder / "pg", rigs, polls, naive_polls),
        )
        sqlite_url = f"sqlite:///{folder / 'sqlite' / 'farm.db'}"
        _report(
            "SQLite (WAL)", rigs, measure(sqlite_url, folder / "sqlite", rigs, polls, naive_polls)
        )


if __name__ == "__main__":
    main()
