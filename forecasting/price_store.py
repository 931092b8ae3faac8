"""Store price series in the `electricity_price` table and read them back, idempotently.

Writing the same hours again updates them in place (a corrected or re-fetched price replaces the
old one) through the dialect's own upsert (SQLite and PostgreSQL ``ON CONFLICT DO UPDATE``).
NaN hours are gaps and are not stored.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Executable, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from forecasting.prices import PriceKind, PriceSeries
from forecasting.tables import ElectricityPrice

logger = logging.getLogger(__name__)

BATCH = 1000
PRICE_TABLE = cast(Table, ElectricityPrice.__table__)
_UPDATED = ("price", "currency", "source", "inserted_at")


def _utc(ts: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we write is UTC
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _upsert(dialect: str, rows: list[dict[str, object]]) -> Executable:
    """The dialect's INSERT .. ON CONFLICT (market, zone, kind, ts) DO UPDATE."""
    keys = ["market", "zone", "kind", "ts"]
    if dialect == "sqlite":
        lite = sqlite.insert(PRICE_TABLE).values(rows)
        return lite.on_conflict_do_update(
            index_elements=keys, set_={c: lite.excluded[c] for c in _UPDATED}
        )
    pg = postgresql.insert(PRICE_TABLE).values(rows)
    return pg.on_conflict_do_update(index_elements=keys, set_={c: pg.excluded[c] for c in _UPDATED})


def upsert_prices(engine: Engine, series: PriceSeries, now: datetime | None = None) -> int:
    """Insert or update every non-NaN hour of ``series``; returns the number of rows written."""
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"price store supports sqlite and postgresql, not {dialect!r}")
    stamp = now or datetime.now(UTC)
    valid = series.prices.dropna()
    if not np.isfinite(valid.to_numpy()).all():
        raise ValueError(f"{series.market}/{series.zone}: infinite price values")
    rows = [
        {
            "market": series.market,
            "zone": series.zone,
            "kind": str(series.kind),
            "ts": ts.to_pydatetime(),
            "price": Decimal(repr(float(v))),
            "currency": series.currency,
            "source": series.source[:128],
            "inserted_at": stamp,
        }
        for ts, v in zip(pd.DatetimeIndex(valid.index), valid.to_numpy(), strict=True)
    ]
    with engine.begin() as conn:
        for i in range(0, len(rows), BATCH):
            conn.execute(_upsert(dialect, rows[i : i + BATCH]))
    logger.info(
        "prices stored market=%s zone=%s kind=%s rows=%d gaps_skipped=%d",
        series.market,
        series.zone,
        series.kind,
        len(rows),
        len(series.prices) - len(valid),
    )
    return len(rows)


def load_prices(
    engine: Engine,
    market: str,
    zone: str,
    kind: PriceKind,
    timezone: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> PriceSeries:
    """Read stored prices for UTC hours in [start, end) as a :class:`PriceSeries`.

    Gaps stay gaps (absent hours); raises LookupError when nothing is stored.
    """
    table = PRICE_TABLE
    query = (
        select(table.c.ts, table.c.price, table.c.currency, table.c.source)
        .where(table.c.market == market, table.c.zone == zone, table.c.kind == str(kind))
        .order_by(table.c.ts)
    )
    if start is not None:
        query = query.where(table.c.ts >= start)
    if end is not None:
        query = query.where(table.c.ts < end)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        raise LookupError(f"no stored {kind} prices for {market}/{zone} in {start}..{end}")
    currencies = {r.currency for r in rows}
    if len(currencies) > 1:
        raise ValueError(f"{market}/{zone}: stored prices mix currencies {sorted(currencies)}")
    index = pd.DatetimeIndex([_utc(r.ts) for r in rows]).as_unit("us")
    prices = pd.Series([float(r.price) for r in rows], index=index, name="price")
    return PriceSeries(
        market=market,
        zone=zone,
        kind=kind,
        timezone=timezone,
        currency=currencies.pop(),
        prices=prices,
        source=rows[-1].source,
    )
