"""Shared fixtures: real data folders, a real mosquitto per test, the PostgreSQL server when it answers."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.paths import exchange_responses_dir, miner_responses_dir, shared_data_dir
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (or FARMCTL_DATA_DIR); skips the test when absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip(
            "real data absent: set FARMCTL_DATA_DIR or place ../shared/data beside the repo"
        )
    return path


@pytest.fixture(scope="session")
def miner_responses() -> Path:
    """../shared/miner-responses; skips the test when absent."""
    path = miner_responses_dir()
    if path is None:
        pytest.skip("recorded miner replies absent: ../shared/miner-responses not found")
    return path


@pytest.fixture(scope="session")
def exchange_responses() -> Path:
    """../shared/exchange-responses; skips the test when absent."""
    path = exchange_responses_dir()
    if path is None:
        pytest.skip("recorded exchange replies absent: ../shared/exchange-responses not found")
    return path


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh mosquitto on a free port, persistence on; killed at the end of the test."""
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed (make test installs the Debian package when it can)")
    broker = MosquittoBroker(tmp_path / "broker")
    broker.workdir.mkdir(parents=True, exist_ok=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


def _postgres_answers() -> bool:
    try:
        with socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh empty schema on the local PostgreSQL `test` database; skips when the server is absent."""
    if not _postgres_answers():
        pytest.skip(f"PostgreSQL not answering on {POSTGRES_HOST}:{POSTGRES_PORT}")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    base = f"postgresql+psycopg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(
            f"PostgreSQL on {POSTGRES_HOST}:{POSTGRES_PORT} refused the test database: {exc}"
        )
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
