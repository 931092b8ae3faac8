"""Writing a poll's telemetry rows: COPY on PostgreSQL, one multi-row INSERT elsewhere.

A poll writes one row per rig every 30 s (50,000 rows at 50,000 rigs). On PostgreSQL, COPY
into the partitioned `rig_telemetry` took 0.26-0.37 s for 20,000 rows against 1.0-1.2 s for the
ORM multi-row INSERT, and the whole poll write (with the `last_seen` update) is 1.9x faster
(bench/RESULTS.md, "Database"): no SQL to build or parse per row, and the server routes rows
to their day partition as they stream in. Poll rows never collide (their id is the rig and the
poll's time), so COPY's lack of ON CONFLICT costs nothing here; MQTT ingest, which must drop
redeliveries, keeps `insert_ignoring_duplicates`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table, insert

from controller.mqtt.tables import RigTelemetry

TELEMETRY = cast(Table, RigTelemetry.__table__)
_COLUMNS = tuple(c.name for c in TELEMETRY.columns)


def write_telemetry(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """Write `rows` of `rig_telemetry` in the caller's transaction; returns how many."""
    if not rows:
        return 0
    if conn.dialect.name != "postgresql":
        conn.execute(insert(TELEMETRY), rows)
        return len(rows)
    # the psycopg connection under the caller's transaction: COPY joins that transaction
    raw: Any = conn.connection.driver_connection
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(c) for c in _COLUMNS)
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {quote(TELEMETRY.name)} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([row.get(c) for c in _COLUMNS])
    return len(rows)
