"""Price store round trips on SQLite and PostgreSQL with real epftoolbox prices."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecasting.price_store import load_prices, upsert_prices
from forecasting.prices import PriceKind, PriceSeries, epftoolbox_path, load_epftoolbox
from forecasting.tables import Base


def _de_week(data_dir: Path) -> PriceSeries:
    series = load_epftoolbox(epftoolbox_path(data_dir, "DE")).to_price_series()
    # local week around the 2016 autumn change: a 25-hour day with its NaN second 02:00 hour
    mask = (series.prices.index >= pd.Timestamp("2016-10-27 22:00", tz="UTC")) & (
        series.prices.index < pd.Timestamp("2016-11-03 23:00", tz="UTC")
    )
    return PriceSeries(
        market=series.market,
        zone="DE",
        kind=PriceKind.DAY_AHEAD,
        timezone=series.timezone,
        currency=series.currency,
        prices=series.prices[mask],
        source="epftoolbox:DE",
    )


def _round_trip(engine: sa.Engine, data_dir: Path) -> None:
    Base.metadata.create_all(engine)
    week = _de_week(data_dir)
    assert week.prices.isna().sum() == 1
    written = upsert_prices(engine, week)
    assert written == len(week.prices) - 1
    # idempotent: the same hours again change nothing
    assert upsert_prices(engine, week) == written
    with engine.connect() as conn:
        count = conn.execute(sa.text("select count(*) from electricity_price")).scalar_one()
    assert count == written
    back = load_prices(engine, "DE", "DE", PriceKind.DAY_AHEAD, "Europe/Berlin")
    expected = week.prices.dropna()
    assert back.prices.index.equals(expected.index.as_unit("us"))
    np.testing.assert_allclose(back.prices.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
    assert back.currency == "EUR"
    # a corrected price replaces the stored one
    first_hour = expected.index[0]
    fixed = PriceSeries(
        market="DE",
        zone="DE",
        kind=PriceKind.DAY_AHEAD,
        timezone="Europe/Berlin",
        currency="EUR",
        prices=pd.Series([-42.5], index=pd.DatetimeIndex([first_hour])),
        source="correction",
    )
    upsert_prices(engine, fixed)
    again = load_prices(
        engine,
        "DE",
        "DE",
        PriceKind.DAY_AHEAD,
        "Europe/Berlin",
        start=first_hour.to_pydatetime(),
        end=datetime(2016, 10, 28, tzinfo=UTC),
    )
    assert again.prices.iloc[0] == -42.5
    assert len(again.prices) == 2  # 22:00 and 23:00 UTC of 2016-10-27
    with pytest.raises(LookupError, match="no stored real_time prices"):
        load_prices(engine, "DE", "DE", PriceKind.REAL_TIME, "Europe/Berlin")


def test_sqlite_round_trip(tmp_path: Path, data_dir: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'prices.db'}")
    try:
        _round_trip(engine, data_dir)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_round_trip(postgres_url: str, data_dir: Path) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        _round_trip(engine, data_dir)
    finally:
        engine.dispose()
