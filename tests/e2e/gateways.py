"""Three `farmctl run` gateways on one PostgreSQL database and one mosquitto (issue 8).

Each gateway runs one site (`--site`) with its own simulated rigs, its own MQTT client id and
its own config file; the three files differ only in the client id (and, for a gateway behind
a `TcpProxy`, the broker port). They share the database, the data folder (so the paper
venue's state file: one exchange account) and one accelerated farm clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, text

from tests.e2e.support import REPO, SimThread, e2e_config, toml_text

PG_HOST, PG_PORT = "127.0.0.1", 5432
ACCOUNTS = "paper:paper"  # the seller lock key of the example config's one paper venue


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database `test_gw_<random>` on the local server (made through the `test`
    database, dropped after); skips the test when the server does not answer."""
    import socket

    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1.0):
            pass
    except OSError:
        pytest.skip(f"PostgreSQL not answering on {PG_HOST}:{PG_PORT}")
    name = f"test_gw_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def three_site_config(
    fleets: dict[str, SimThread],
    root: Path,
    database_url: str,
    mqtt_port: int,
    strategy: dict[str, Any] | None = None,
    **risk: float,
) -> dict[str, Any]:
    """The farm config (as a dict) with one site per fleet, racks and rigs named per site."""
    first = next(iter(fleets.values()))
    raw = e2e_config(first.sim, root, strategy, **risk).model_dump(mode="json", exclude_none=True)
    template = raw["sites"][0]
    sites, rigs = [], []
    for site_id, fleet in fleets.items():
        racks = [r | {"id": f"{site_id}-{r['id']}"} for r in template.get("racks", [])]
        sites.append(template | {"id": site_id, "name": f"site {site_id}", "racks": racks})
        for rig in fleet.sim.rigs:
            entry = {
                "name": f"{site_id}-{rig.family}-{rig.index:02d}",
                "site": site_id,
                "address": f"{rig.host}:{rig.port if rig.family != 'bitaxe' else rig.http_port}",
                "family": rig.family,
                "model": rig.model.model,
                "http_port": rig.http_port,
            }
            if racks:
                entry["rack"] = racks[rig.index % len(racks)]["id"]
            rigs.append({k: v for k, v in entry.items() if v is not None})
    raw["sites"], raw["rigs"] = sites, rigs
    raw["database"] = raw.get("database", {}) | {"url": database_url}
    raw["mqtt"] = raw["mqtt"] | {"enabled": True, "host": "127.0.0.1", "port": mqtt_port}
    raw["electricity"] = raw["electricity"] | {"api_url": "http://127.0.0.1:9/unreachable"}
    raw["planner"] = raw["planner"] | {"hashprice_usd_per_th_day": 0.049}
    return raw


class BrokerLog:
    """A test client subscribed to `#` on the broker: every message with its arrival time and
    the outbox's `msg_id` user property (None for messages without one)."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[float, str, str | None, bytes]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-log-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self._ready = threading.Event()
        self.client.on_connect = lambda client, *a: client.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "the test subscriber did not subscribe"

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        msg_id = None
        for key, value in getattr(msg.properties, "UserProperty", None) or []:
            if key == "msg_id":
                msg_id = value
        with self.lock:
            self.messages.append((time.monotonic(), msg.topic, msg_id, bytes(msg.payload)))

    def count(self, since: float = 0.0, until: float = float("inf")) -> int:
        """Messages received in the monotonic window."""
        with self.lock:
            return sum(1 for t, *_ in self.messages if since <= t < until)

    def ids(self, prefix: str) -> dict[str, int]:
        """How many times each `msg_id` starting with `prefix` arrived."""
        seen: dict[str, int] = {}
        with self.lock:
            for _, _, msg_id, _ in self.messages:
                if msg_id is not None and msg_id.startswith(prefix):
                    seen[msg_id] = seen.get(msg_id, 0) + 1
        return seen

    def topic_counts(self, since: float, until: float) -> dict[str, int]:
        """Messages per topic kind in the window (site and rig levels replaced by +)."""
        counts: dict[str, int] = {}
        with self.lock:
            for t, topic, _, _ in self.messages:
                if since <= t < until:
                    parts = topic.split("/")
                    if len(parts) >= 4 and parts[2] == "rig":
                        parts[1], parts[3] = "+", "+"
                    elif len(parts) >= 3 and parts[0] == "farmctl" and parts[1].startswith("site"):
                        parts[1] = "+"
                    kind = "/".join(parts)
                    counts[kind] = counts.get(kind, 0) + 1
        return counts

    def arrivals(self, msg_id: str) -> list[float]:
        """When each copy of the message with this `msg_id` arrived (monotonic)."""
        with self.lock:
            return [t for t, _, m, _ in self.messages if m == msg_id]

    def topics(self, match: str, since: float = 0.0) -> list[tuple[float, str, bytes]]:
        """(time, topic, payload) of messages whose topic matches the filter `match`."""
        with self.lock:
            return [
                (t, topic, p)
                for t, topic, _, p in self.messages
                if t >= since and paho.topic_matches_sub(match, topic)
            ]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Gateway:
    """One `farmctl run --site` process (restarted under a new log file each run)."""

    site: str
    config: Path
    runs: int = 0
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def log(self) -> Path:
        """The log of the current (or last) run."""
        return self.logs[-1]

    def log_text(self) -> str:
        """The current run's log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        """The process runs."""
        return self.proc is not None and self.proc.poll() is None


@dataclass
class GatewayFarm:
    """Three gateways on one farm clock; `launch`, `kill`, `stop` each by site."""

    root: Path
    database_url: str
    fleets: dict[str, SimThread]
    gateways: dict[str, Gateway]
    start: datetime
    epoch: float
    speed: float

    def farm_now(self) -> datetime:
        """The farm clock the gateways run on."""
        return self.start + timedelta(seconds=(time.time() - self.epoch) * self.speed)

    def launch(self, site: str) -> None:
        """Start (or restart) the gateway of `site`."""
        gw = self.gateways[site]
        gw.runs += 1
        gw.logs.append(self.root / f"gateway-{site}-{gw.runs}.log")
        with gw.log.open("wb") as out:
            gw.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "farmctl"),
                    "run",
                    "--config",
                    str(gw.config),
                    "--site",
                    site,
                    "--clock-start",
                    self.start.isoformat(),
                    "--clock-speed",
                    str(self.speed),
                    "--clock-epoch",
                    repr(self.epoch),
                ],
                cwd=REPO,
                env=os.environ | {"PYTHONPATH": str(REPO)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self, site: str) -> None:
        """SIGKILL the gateway of `site` and reap it."""
        proc = self.gateways[site].proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, site: str, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for the clean shutdown; returns the exit code."""
        proc = self.gateways[site].proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout_s)

    def wait_log(self, site: str, needle: str, timeout_s: float, count: int = 1) -> float:
        """Wait until the current log of `site` holds `needle` `count` times; returns when
        (monotonic). Fails at once when the process exits."""
        gw = self.gateways[site]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if gw.log_text().count(needle) >= count:
                return time.monotonic()
            if not gw.alive():
                raise AssertionError(f"gateway {site} exited:\n{gw.log_text()[-3000:]}")
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} x{count} not in gateway {site}'s log after {timeout_s} s")

    def sellers(self) -> list[str]:
        """Sites whose current run has taken the seller role (logged once per takeover)."""
        return [s for s, gw in self.gateways.items() if "treasury seller:" in gw.log_text()]

    def close(self) -> None:
        """Kill every gateway still running."""
        for gw in self.gateways.values():
            if gw.proc is not None and gw.proc.poll() is None:
                gw.proc.kill()
                gw.proc.wait(10)


@contextmanager
def gateway_farm(
    root: Path,
    database_url: str,
    mqtt_port: int,
    fleets: dict[str, SimThread],
    *,
    start: datetime,
    speed: float,
    ports: dict[str, int] | None = None,
    strategy: dict[str, Any] | None = None,
    risk: dict[str, float] | None = None,
    prepare: Callable[[str], None] | None = None,
) -> Iterator[GatewayFarm]:
    """Write the config file, upgrade the database once (`farmctl db upgrade`), call
    `prepare(database_url)` (seed prices, coins), start the gateways; kill them at the end.

    Every gateway runs from the one config (each derives its own MQTT client id from its
    site); `ports` gives a gateway another broker port (a proxy in front of the broker), which
    takes a copy of the file with that port."""
    raw = three_site_config(fleets, root, database_url, mqtt_port, strategy, **(risk or {}))
    raw["mqtt"] = {k: v for k, v in raw["mqtt"].items() if k != "client_id"}
    shared = root / "farm.toml"
    shared.write_text(toml_text(raw))
    gateways = {}
    for site in fleets:
        config = shared
        if ports and site in ports:
            config = root / f"gw-{site}" / "farm.toml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(toml_text(raw | {"mqtt": raw["mqtt"] | {"port": ports[site]}}))
        gateways[site] = Gateway(site, config)
    first = next(iter(gateways.values()))
    upgrade = subprocess.run(
        [
            str(Path(sys.executable).parent / "farmctl"),
            "db",
            "upgrade",
            "--config",
            str(first.config),
        ],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    if prepare is not None:
        prepare(database_url)
    farm = GatewayFarm(root, database_url, fleets, gateways, start, time.time(), speed)
    try:
        for site in gateways:
            farm.launch(site)
        for site in gateways:
            farm.wait_log(site, "gateway running", timeout_s=120)
        yield farm
    finally:
        farm.close()


def seed_report_start(database_url: str, day: date) -> None:
    """Tell the treasury its first farm day was `day`: the first seller reports it at once."""
    from treasury.ledger import Ledger

    engine = create_engine(database_url)
    try:
        Ledger(engine).set_flag(f"treasury:{ACCOUNTS}:first_day", day.isoformat())
    finally:
        engine.dispose()


def database_writes(database_url: str) -> dict[str, int]:
    """PostgreSQL's own counters for this database: rows inserted, updated, deleted; commits."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT tup_inserted, tup_updated, tup_deleted, xact_commit "
                    "FROM pg_stat_database WHERE datname = current_database()"
                )
            ).one()
    finally:
        engine.dispose()
    return {"inserted": row[0], "updated": row[1], "deleted": row[2], "commits": row[3]}


def table_writes(database_url: str) -> dict[str, int]:
    """Rows inserted + updated + deleted per table (day partitions summed into their table)."""
    import re

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables")
            ).all()
    finally:
        engine.dispose()
    totals: dict[str, int] = {}
    for name, count in rows:
        table = re.sub(r"_(p\d{8}|default)$", "", name)
        totals[table] = totals.get(table, 0) + int(count)
    return totals


def scalar(database_url: str, sql: str, **params: Any) -> Any:
    """One value from the farm database."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()
    finally:
        engine.dispose()


def decimal_json(payload: bytes) -> Any:
    """A JSON payload with numbers as Decimal."""
    return json.loads(payload, parse_float=Decimal)
