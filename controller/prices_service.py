"""The daemon's price data: fetch from the site's market into the database, read back as a feed.

`ingest_prices` pulls recent prices from the configured market (ERCOT public reports, ENTSO-E,
or a CSV file) and upserts them into the price store; `StoredPriceFeed` gives the planner what
is known at a moment from the stored rows. A failed fetch leaves the stored prices as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import Engine

from controller.config import ElectricityConfig
from controller.planning import known_slice
from forecasting.price_store import load_prices, upsert_prices
from forecasting.prices import PriceKind, PriceSeries

if TYPE_CHECKING:
    from controller.gateway import Gateway
    from controller.planning import PlanService
    from forecasting.plan_types import HashingPlan

log = logging.getLogger(__name__)

MARKET_TIMEZONES = {"ercot": "America/Chicago"}


def market_timezone(electricity: ElectricityConfig, site_timezone: str) -> str:
    """The time zone the market's days are cut in (ERCOT: Central), else the site's."""
    return MARKET_TIMEZONES.get(electricity.market, site_timezone)


def _secret(ref: object) -> str | None:
    resolve = getattr(ref, "resolve_or_none", None)
    value = resolve() if resolve else None
    return value.get_secret_value() if value is not None else None


def fetch_prices(
    electricity: ElectricityConfig, now: datetime, base_dir: Path, site_timezone: str
) -> list[PriceSeries]:
    """Recent prices from the configured market: DA for today and tomorrow, RT up to now."""
    tz = market_timezone(electricity, site_timezone)
    today = pd.Timestamp(now).tz_convert(tz).date()
    if electricity.market == "ercot":
        from forecasting.ercot import DEFAULT_API_BASE, ErcotPublicApi

        api = ErcotPublicApi(
            electricity.api_url or DEFAULT_API_BASE,
            subscription_key=_secret(electricity.ercot_subscription_key),
            bearer_token=_secret(electricity.ercot_token),
        )
        return [
            api.day_ahead(electricity.zone, today - timedelta(days=1), today + timedelta(days=1)),
            api.real_time(electricity.zone, today - timedelta(days=1), today),
        ]
    if electricity.market == "entsoe":
        from forecasting.entsoe import DEFAULT_URL, EntsoeClient

        token = electricity.entsoe_token.resolve() if electricity.entsoe_token else None
        client = EntsoeClient(token, base_url=electricity.api_url or DEFAULT_URL)
        start = datetime.combine(today - timedelta(days=1), datetime.min.time(), UTC)
        return [
            client.day_ahead_prices(electricity.zone, start, start + timedelta(days=3), gaps="keep")
        ]
    if electricity.market == "csv":
        from forecasting.prices import load_csv

        assert electricity.prices_csv is not None
        path = (
            electricity.prices_csv
            if electricity.prices_csv.is_absolute()
            else base_dir / electricity.prices_csv
        )
        return [
            load_csv(
                path,
                timestamp_col="timestamp",
                price_col="price",
                tz=tz,
                market="CSV",
                zone=electricity.zone,
                currency=electricity.currency,
                gaps="keep",
            )
        ]
    return []  # fixed tariff, or epftoolbox (evaluation data, not a live feed)


def ingest_prices(
    engine: Engine,
    electricity: ElectricityConfig,
    now: datetime,
    base_dir: Path,
    site_timezone: str,
) -> int:
    """Fetch and store recent prices; returns rows written (0 when the market has no feed)."""
    written = 0
    for series in fetch_prices(electricity, now, base_dir, site_timezone):
        written += upsert_prices(engine, series, now=now)
    return written


@dataclass
class StoredPriceFeed:
    """The planner's feed over the price store: DA and RT of one zone, as known at a moment."""

    engine: Engine
    market: str
    zone: str
    timezone: str
    history_days: int = 200

    def known(self, now: datetime) -> pd.DataFrame:
        """Stored DA and RT on one hourly grid, cut to what is known at `now`."""
        start = now - timedelta(days=self.history_days)
        series = {}
        for column, kind in (("da", PriceKind.DAY_AHEAD), ("rt", PriceKind.REAL_TIME)):
            try:
                stored = load_prices(
                    self.engine, self.market, self.zone, kind, self.timezone, start=start
                )
                series[column] = stored.prices
            except LookupError:
                series[column] = pd.Series(dtype=float)
        frame = pd.DataFrame(series)
        if frame.empty:
            return pd.DataFrame({"da": [], "rt": []}, index=pd.DatetimeIndex([], tz="UTC"))
        grid = pd.date_range(frame.index.min(), frame.index.max(), freq="h")
        return known_slice(frame.reindex(grid), now, self.timezone)


def stored_market_name(electricity: ElectricityConfig) -> str:
    """The market label the adapters store rows under."""
    return {"ercot": "ERCOT", "entsoe": "ENTSOE", "csv": "CSV"}.get(
        electricity.market, electricity.market.upper()
    )


def attach_site_planning(
    gateway: Gateway, on_plan: Callable[[HashingPlan], None] | None = None
) -> PlanService:
    """Price ingest, refit and replan jobs for a gateway's site, fed from the price store."""
    from controller.planning import PlanService, attach_planning

    config = gateway.config
    electricity = config.electricity
    site = next(s for s in config.sites if s.id in gateway.sites)
    tz = market_timezone(electricity, site.timezone)
    feed = StoredPriceFeed(gateway.engine, stored_market_name(electricity), electricity.zone, tz)
    planner = PlanService(config, feed, gateway.sessions)
    ingest = None
    if electricity.market in ("ercot", "entsoe", "csv"):

        def ingest(now: datetime) -> int:
            return ingest_prices(gateway.engine, electricity, now, gateway.base_dir, site.timezone)

    attach_planning(gateway, planner, ingest=ingest, on_plan=on_plan)
    return planner


def hourly_energy_price(
    engine: Engine, electricity: ElectricityConfig, timezone: str
) -> Callable[[datetime], float | None]:
    """The price the site pays for an hour (per MWh, delivery adder included), for the sale
    reports' electricity cost: the fixed tariff, or the stored RT or DA price of that hour."""
    if electricity.tariff == "fixed":
        fixed = float(electricity.fixed_price_per_mwh or 0.0) + electricity.adder_per_mwh
        return lambda _hour: fixed
    market = stored_market_name(electricity)
    kind = PriceKind.REAL_TIME if electricity.tariff == "real_time" else PriceKind.DAY_AHEAD

    def price(hour: datetime) -> float | None:
        try:
            stored = load_prices(
                engine,
                market,
                electricity.zone,
                kind,
                timezone,
                start=hour,
                end=hour + timedelta(hours=1),
            )
        except LookupError:
            return None
        return float(stored.prices.iloc[0]) + electricity.adder_per_mwh

    return price
