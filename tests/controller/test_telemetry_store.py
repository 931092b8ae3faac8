"""A poll's telemetry rows: COPY on PostgreSQL, INSERT on SQLite, same rows back, same transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from controller import migrate
from controller.config import parse_config
from controller.gateway import Gateway
from controller.mqtt.tables import RigTelemetry
from controller.storage import make_engine
from controller.tables import RigRecord
from controller.telemetry_store import write_telemetry
from miners.status import BoardStatus, RigStatus

WHEN = datetime.now(UTC).replace(microsecond=123456)


def _url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'farm.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _rows() -> list[dict[str, Any]]:
    full = {
        "msg_id": "poll:rig-01:t",
        "time": WHEN,
        "received_at": WHEN + timedelta(milliseconds=5),
        "site": "west",
        "rig": "rig-01",
        "mac": "02:00:00:00:00:01",
        "state": "hashing",
        "hashrate_ths": 104.25,
        "power_w": 3251.5,
        "power_source": "meter",
        "temp_c": 63.5,
        "chip_temp_c": 76.0,
    }
    # an offline rig: every reading unknown
    empty = {
        **{k: None for k in full},
        "msg_id": "poll:rig-02:t",
        "time": WHEN,
        "received_at": WHEN,
        "site": "west",
        "rig": "rig-02",
        "state": "offline",
    }
    return [full, empty]


def _stored(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(RigTelemetry.__table__).order_by(RigTelemetry.rig))
        return [
            {**r._asdict(), "time": r.time.astimezone(UTC) if r.time.tzinfo else r.time}
            for r in rows
        ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_rows_come_back_as_written(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _url(backend, request, tmp_path)
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        assert write_telemetry(conn, _rows()) == 2
    stored = _stored(engine)
    expected = _rows()
    for got, want in zip(stored, expected, strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            if isinstance(value, datetime):
                back = got[key] if got[key].tzinfo else got[key].replace(tzinfo=UTC)
                assert back == value, key
            else:
                assert got[key] == value, key
    engine.dispose()


def test_copy_is_part_of_the_callers_transaction(postgres_url: str) -> None:
    migrate.upgrade(postgres_url)
    engine = make_engine(postgres_url)
    with pytest.raises(RuntimeError, match="after the copy"), engine.begin() as conn:
        write_telemetry(conn, _rows())
        raise RuntimeError("after the copy")
    assert _stored(engine) == []
    engine.dispose()


def test_gateway_poll_write_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    raw = {
        "farm": {"name": "copy", "data_dir": str(tmp_path)},
        "sites": [{"id": "west"}],
        "rigs": [
            {"name": f"rig-0{i}", "site": "west", "address": f"127.0.0.1:{4028 + i}"}
            for i in (1, 2)
        ],
        "database": {"url": postgres_url},
        "metrics": {"enabled": False},
    }
    gateway = Gateway(parse_config(raw, tmp_path / "farm.toml"), base_dir=tmp_path)
    migrate.upgrade(postgres_url)
    gateway._sync_inventory()
    statuses = {
        "rig-01": RigStatus(
            mac="02:00:00:00:00:01",
            state="hashing",
            hashrate_ths=104.0,
            power_w=3250.0,
            power_source="reported",
            boards=[BoardStatus(index=0, temp_c=61.0, chip_temp_c=74.0)],
        ),
        "rig-02": RigStatus(state="offline"),
    }
    gateway._store_poll(statuses, WHEN)
    stored = {r["rig"]: r for r in _stored(gateway.engine)}
    assert stored["rig-01"]["hashrate_ths"] == 104.0 and stored["rig-01"]["temp_c"] == 61.0
    assert stored["rig-01"]["msg_id"] == f"poll:rig-01:{WHEN.isoformat()}"
    assert stored["rig-02"]["state"] == "offline" and stored["rig-02"]["power_w"] is None
    with gateway.sessions() as session:
        seen = {r.name: r.last_seen for r in session.scalars(sa.select(RigRecord))}
    assert seen["rig-01"] == WHEN and seen["rig-02"] is None
    gateway.engine.dispose()
