"""One seller per exchange account: the gateway holding the account's lock is the only one selling.

On PostgreSQL the lock is a session-level advisory lock (`pg_try_advisory_lock`) held on a
connection of its own, outside the engine's pool, so no pool recycling or `pool_pre_ping` can
drop it by accident. The lock lives exactly as long as that connection's server session:

- the holder's process dies (crash, SIGKILL, OOM): its kernel closes the socket, the server
  backend sees the EOF and ends, the lock is free at once; a standby takes it on its next try;
- the holder's host dies or the network to the database is cut: no FIN ever arrives, and the
  server only learns of it through TCP keepalive. The lock connection sets the server's
  `tcp_keepalives_*` for its own session (and libpq's `keepalives_*` for the client side), so
  the server drops the session within ``idle + interval * count`` seconds (defaults 10 + 5 * 3 =
  25 s) and `tcp_user_timeout` bounds a send that is never acknowledged the same way.

Two sellers at once are prevented by the lock plus the ledger: a gateway that has lost its
database cannot write the `intent` row the executor commits before any order reaches a venue,
so it cannot place an order; `held()` is checked at the start of every treasury tick.

On SQLite the database belongs to one gateway by definition (a file on its own disk, one
`farmctl run` per file): there is no second gateway to exclude, so the lock always succeeds.
It is deliberately not exclusive inside the process either: an in-process restart (tests, the
demo) builds a new treasury while the old object may still be alive, and must sell.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)


class SellerLockError(RuntimeError):
    """The seller lock cannot be used with this database; the message says why."""


@dataclass(frozen=True)
class KeepAlive:
    """TCP keepalive of the lock connection: the takeover bound when a holder's host vanishes."""

    idle_s: int = 10
    interval_s: int = 5
    count: int = 3

    @property
    def bound_s(self) -> int:
        """Longest time the server keeps the session (and the lock) of a vanished holder."""
        return self.idle_s + self.interval_s * self.count


def account_key(exchange: str, account: str) -> str:
    """The lock name of one exchange account: ccxt exchange id and the venue's id (never a key)."""
    return f"{exchange}:{account}"


def lock_id(key: str) -> int:
    """A stable signed 64-bit advisory-lock id for `key` (the same in every process and host)."""
    digest = hashlib.blake2b(f"farmctl.seller:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SellerLock:
    """The lock of one exchange account; `try_acquire`, `held`, `release` never block."""

    def __init__(self, engine: Engine, key: str, keepalive: KeepAlive | None = None) -> None:
        self.key = key
        self.id = lock_id(key)
        self.keepalive = keepalive or KeepAlive()
        self.backend = engine.url.get_backend_name()
        if self.backend not in ("postgresql", "sqlite"):
            raise SellerLockError(f"seller lock on {self.backend!r}: use postgresql or sqlite")
        self._url = engine.url
        self._mutex = threading.Lock()  # the tick thread and the event loop may both ask
        self._conn: Connection | None = None
        self._engine: Engine | None = None
        self._local = False

    # -- PostgreSQL --------------------------------------------------------------------------
    def _connect(self) -> Connection:
        if self._engine is None:
            ka = self.keepalive
            self._engine = create_engine(
                self._url,
                poolclass=NullPool,  # one connection that lives as long as the lock, no pool
                connect_args={
                    "keepalives": 1,
                    "keepalives_idle": ka.idle_s,
                    "keepalives_interval": ka.interval_s,
                    "keepalives_count": ka.count,
                    "tcp_user_timeout": ka.bound_s * 1000,
                    "connect_timeout": 10,
                },
            )
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        ka = self.keepalive
        # The server side of the session: how soon PostgreSQL drops a holder whose host is gone.
        for name, value in (
            ("tcp_keepalives_idle", ka.idle_s),
            ("tcp_keepalives_interval", ka.interval_s),
            ("tcp_keepalives_count", ka.count),
            ("tcp_user_timeout", ka.bound_s * 1000),
        ):
            conn.execute(text(f"SET {name} = {int(value)}"))
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never back to a pool: the session (and any lock) must end
                conn.close()
            except Exception:  # the socket is already broken; nothing more to release
                log.debug("seller lock connection already gone key=%s", self.key)

    def _pg_held(self) -> bool:
        assert self._conn is not None
        hi, lo = (self.id >> 32) & 0xFFFFFFFF, self.id & 0xFFFFFFFF
        row = self._conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND classid = CAST(:hi AS oid)"
                " AND objid = CAST(:lo AS oid) AND objsubid = 1"
            ),
            {"hi": hi, "lo": lo},
        ).scalar_one()
        return bool(row)

    # -- public ------------------------------------------------------------------------------
    def try_acquire(self) -> bool:
        """Take the lock if it is free (True also when already held by us); never waits."""
        with self._mutex:
            if self.backend == "sqlite":
                self._local = True
                return True
            if self._conn is not None and self._alive_and_held():
                return True
            try:
                self._conn = self._connect()
                got = bool(
                    self._conn.execute(
                        text("SELECT pg_try_advisory_lock(:id)"), {"id": self.id}
                    ).scalar_one()
                )
            except DBAPIError as exc:
                log.warning("seller lock unavailable key=%s error=%s", self.key, exc)
                self._drop()
                return False
            if not got:
                self._drop()  # a standby keeps no session open between tries
            return got

    def held(self) -> bool:
        """True while the lock is ours: the connection answers and the server lists the lock."""
        with self._mutex:
            if self.backend == "sqlite":
                return self._local
            return self._conn is not None and self._alive_and_held()

    def _alive_and_held(self) -> bool:
        try:
            if self._pg_held():
                return True
        except DBAPIError as exc:
            log.warning("seller lock connection lost key=%s error=%s", self.key, exc)
        # A broken connection or a lock the server no longer lists: it is gone either way.
        self._drop()
        return False

    def release(self) -> None:
        """Give the lock up (clean shutdown); closing the session frees it on the server."""
        with self._mutex:
            if self.backend == "sqlite":
                self._local = False
                return
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": self.id})
                except DBAPIError:
                    log.debug("unlock on a broken connection key=%s", self.key)
            self._drop()
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None


class SellerGate:
    """The locks of every account a treasury sells on: all of them, or it stays on standby."""

    def __init__(
        self, engine: Engine, keys: Iterable[str], keepalive: KeepAlive | None = None
    ) -> None:
        # Sorted: every gateway tries the accounts in the same order.
        self.locks = [SellerLock(engine, k, keepalive) for k in sorted(set(keys))]
        self.role = "standby"
        self.since: float | None = None  # monotonic time the current role began
        self.takeovers = 0

    @property
    def keys(self) -> str:
        """The accounts this gate sells on, comma-separated (for logs and the live view)."""
        return ",".join(lock.key for lock in self.locks)

    def ensure(self) -> bool:
        """Hold every lock (taking those that are free); False, holding none, if any is taken."""
        if all(lock.held() for lock in self.locks):
            return True
        got = [lock for lock in self.locks if lock.try_acquire()]
        if len(got) == len(self.locks):
            self.takeovers += 1
            self._become("seller")
            log.info(
                "seller lock acquired accounts=%s takeovers=%d",
                self.keys,
                self.takeovers,
            )
            return True
        for lock in got:  # a half-held set would block the other gateway forever
            lock.release()
        if self.role == "seller":
            log.warning("seller lock lost accounts=%s", self.keys)
        self._become("standby")
        return False

    def _become(self, role: str) -> None:
        if role != self.role or self.since is None:
            self.role, self.since = role, time.monotonic()

    def release(self) -> None:
        """Give every lock up (clean shutdown: the standby takes over on its next tick)."""
        for lock in self.locks:
            lock.release()
        self._become("standby")
