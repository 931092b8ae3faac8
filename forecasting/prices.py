"""Price series types, DST-correct conversion from market local time, validation and file loaders.

Every price series in farmctl is hourly on a tz-aware **UTC** index, with the market's IANA time
zone carried beside it for display and for building local market days. Local wall-clock times are
converted with :func:`local_to_utc`, which never shifts or duplicates an hour: a 23-hour spring day
yields 23 UTC hours, a 25-hour autumn day 25 (the repeated hour is told apart by a DST flag or by
order of appearance).

Data-quality policy (documented in docs/forecasting.md):

* missing hours: ``gaps="raise"`` (default) raises :class:`MissingHoursError` naming the first
  missing hours; ``gaps="keep"`` reindexes to the full hourly grid with NaN as explicit gaps;
* NaN values are explicit gaps and follow the same policy;
* negative prices are real (ERCOT, Germany) and are kept unchanged;
* duplicate UTC timestamps raise :class:`DuplicateHoursError` (never silently dropped);
* stale data (last hour older than ``max_age``) raises :class:`StaleDataError` via
  :func:`check_fresh`.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

GapPolicy = Literal["raise", "keep"]

MARKET_TIMEZONES: dict[str, str] = {
    "NP": "Europe/Oslo",
    "BE": "Europe/Brussels",
    "FR": "Europe/Paris",
    "DE": "Europe/Berlin",
    "ERCOT": "America/Chicago",
}
MARKET_CURRENCIES: dict[str, str] = {
    "NP": "EUR",
    "BE": "EUR",
    "FR": "EUR",
    "DE": "EUR",
    "ERCOT": "USD",
}
EPFTOOLBOX_MARKETS: tuple[str, ...] = ("NP", "BE", "FR", "DE")


class PriceKind(StrEnum):
    """What a price is: a cleared day-ahead price, a real-time price, or our forecast."""

    DAY_AHEAD = "day_ahead"
    REAL_TIME = "real_time"
    FORECAST = "forecast"


class PriceDataError(ValueError):
    """Base class for price data that cannot be used as it is."""


class MissingHoursError(PriceDataError):
    """Hours are missing (or NaN) and the gap policy says raise."""


class DuplicateHoursError(PriceDataError):
    """The same UTC hour appears twice."""


class NonexistentLocalTimeError(PriceDataError):
    """A local wall-clock time that does not exist (skipped by a spring DST change)."""


class AmbiguousLocalTimeError(PriceDataError):
    """A repeated autumn wall-clock hour that cannot be told apart (no DST flag, not in order)."""


class StaleDataError(PriceDataError):
    """The newest price is older than allowed."""


@dataclass(frozen=True)
class PriceSeries:
    """Hourly prices on a tz-aware UTC index (NaN = explicit gap), with their market's time zone."""

    market: str
    zone: str
    kind: PriceKind
    timezone: str
    currency: str
    prices: pd.Series
    source: str = ""

    def __post_init__(self) -> None:
        index = self.prices.index
        if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
            raise PriceDataError(f"{self.market}/{self.zone}: prices need a tz-aware DatetimeIndex")
        if str(index.tz) != "UTC":
            raise PriceDataError(
                f"{self.market}/{self.zone}: index must be UTC, got {index.tz} "
                "(convert local times with local_to_utc first)"
            )
        if index.has_duplicates:
            dup = index[index.duplicated()][:3]
            raise DuplicateHoursError(f"{self.market}/{self.zone}: duplicate hours {list(dup)}")
        if not index.is_monotonic_increasing:
            raise PriceDataError(f"{self.market}/{self.zone}: index is not sorted")
        ZoneInfo(self.timezone)  # raises on an unknown zone name

    @property
    def local_index(self) -> pd.DatetimeIndex:
        """The index in the market's local time (for display and local market days)."""
        return pd.DatetimeIndex(self.prices.index).tz_convert(self.timezone)

    def gaps(self) -> pd.DatetimeIndex:
        """UTC hours with no price: NaN values plus hours missing from the hourly grid."""
        return missing_hours(self.prices)

    def local_day(self, day: date) -> pd.Series:
        """The prices of one local market day (23, 24 or 25 values)."""
        hours = local_day_hours(day, self.timezone)
        return self.prices.reindex(hours)


def local_day_hours(day: date, tz: str) -> pd.DatetimeIndex:
    """UTC start instants of every hour of one local day: 23, 24 or 25 of them across DST."""
    zone = ZoneInfo(tz)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    return pd.date_range(
        pd.Timestamp(start).tz_convert("UTC"),
        pd.Timestamp(end).tz_convert("UTC"),
        freq="h",
        inclusive="left",
    )


def local_to_utc(
    local: Sequence[datetime] | pd.DatetimeIndex | pd.Series,
    tz: str,
    dst_flag: Sequence[bool] | np.ndarray | pd.Series | None = None,
) -> pd.DatetimeIndex:
    """Convert naive local wall-clock hour starts to UTC without shifting or duplicating hours.

    ``dst_flag`` tells, for a repeated autumn hour, which occurrence a row is: True = the first
    (daylight-saving) one, False = the second (standard-time) one; it is ignored on other rows.
    Without it, repeated hours must appear in order (first then second). A wall-clock time
    skipped by the spring change raises :class:`NonexistentLocalTimeError`.
    """
    naive = pd.DatetimeIndex(pd.to_datetime(local))
    if naive.tz is not None:
        return naive.tz_convert("UTC")
    if dst_flag is not None:
        flags = np.asarray(dst_flag, dtype=bool)
    try:
        if dst_flag is not None:
            aware = naive.tz_localize(tz, ambiguous=flags, nonexistent="raise")
        else:
            aware = naive.tz_localize(tz, ambiguous="infer", nonexistent="raise")
    except ValueError as exc:  # pandas raises plain ValueError subclasses whose names vary
        text = f"{type(exc).__name__} {exc}".lower()
        if "nonexistent" in text:
            raise NonexistentLocalTimeError(
                f"local time does not exist in {tz} (skipped by the spring DST change): {exc}"
            ) from exc
        if "ambiguous" in text or "infer" in text:
            raise AmbiguousLocalTimeError(
                f"repeated autumn hour in {tz} cannot be placed: {exc}; pass a DST flag"
            ) from exc
        raise
    return aware.tz_convert("UTC")


def hour_ending_to_utc(
    delivery_date: Sequence[date] | pd.Series,
    hour_ending: Sequence[int] | pd.Series,
    tz: str,
    repeated_hour_flag: Sequence[bool] | np.ndarray | pd.Series | None = None,
    convention: Literal["wall", "elapsed"] = "wall",
) -> pd.DatetimeIndex:
    """UTC hour starts for (local delivery date, hour ending) pairs, as ERCOT reports give them.

    ``convention="wall"``: hour ending ``h`` covers local wall clock ``[h-1, h)``; on the autumn day
    the repeated hour appears twice and ``repeated_hour_flag`` (ERCOT's DSTFlag == "Y") marks the
    second, standard-time row (without flags the two must come in order). A wall hour skipped in
    spring raises :class:`NonexistentLocalTimeError`.
    ``convention="elapsed"``: hour ending ``h`` is the ``h``-th hour after local midnight, so a
    spring day runs 1..23 and an autumn day 1..25.
    """
    dates = pd.DatetimeIndex(pd.to_datetime(pd.Series(list(delivery_date)))).normalize()
    he = np.asarray(list(hour_ending), dtype="int64")
    if ((he < 1) | (he > 25)).any():
        raise PriceDataError(f"hour ending outside 1..25: {sorted(set(he[(he < 1) | (he > 25)]))}")
    if convention == "elapsed":
        midnight = dates.tz_localize(tz).tz_convert("UTC")
        stamps = midnight + pd.to_timedelta(he - 1, unit="h")
        next_midnight = (dates + pd.Timedelta(days=1)).tz_localize(tz).tz_convert("UTC")
        over = stamps >= next_midnight
        if over.any():
            k = int(np.argmax(over))
            raise NonexistentLocalTimeError(
                f"{dates[k].date()} is shorter than {he[k]} hours in {tz}"
            )
        return pd.DatetimeIndex(stamps)
    if (he > 24).any():
        raise PriceDataError("hour ending 25 needs convention='elapsed'")
    local = dates + pd.to_timedelta(he - 1, unit="h")
    first = None if repeated_hour_flag is None else ~np.asarray(repeated_hour_flag, dtype=bool)
    return local_to_utc(local, tz, first)


def missing_hours(prices: pd.Series) -> pd.DatetimeIndex:
    """UTC hours inside the series' span that are absent or NaN."""
    if prices.empty:
        return pd.DatetimeIndex([], tz="UTC")
    index = pd.DatetimeIndex(prices.index)
    full = pd.date_range(index[0], index[-1], freq="h")
    absent = full.difference(index)
    nan = index[prices.isna().to_numpy()]
    return absent.union(nan)


def validate_hourly(
    prices: pd.Series, gaps: GapPolicy = "raise", what: str = "prices"
) -> pd.Series:
    """Check an hourly UTC series: sorted, no duplicates, on the hour; gaps per the policy.

    Returns the series reindexed to the full hourly grid (NaN where missing) under ``gaps="keep"``.
    Negative prices are real and kept.
    """
    index = pd.DatetimeIndex(prices.index)
    if index.tz is None or str(index.tz) != "UTC":
        raise PriceDataError(f"{what}: index must be tz-aware UTC")
    if index.has_duplicates:
        raise DuplicateHoursError(f"{what}: duplicate hours {list(index[index.duplicated()][:3])}")
    if not index.is_monotonic_increasing:
        raise PriceDataError(f"{what}: timestamps are not in order")
    off_hour = index[(index.minute != 0) | (index.second != 0)]
    if len(off_hour):
        raise PriceDataError(f"{what}: timestamps not on the hour, e.g. {off_hour[0]}")
    holes = missing_hours(prices)
    if len(holes) and gaps == "raise":
        raise MissingHoursError(
            f"{what}: {len(holes)} missing or NaN hours, first {[str(t) for t in holes[:3]]}"
        )
    if len(holes):
        logger.warning(
            "price gaps kept what=%s missing_hours=%d first=%s", what, len(holes), holes[0]
        )
    full = pd.date_range(index[0], index[-1], freq="h") if len(index) else index
    return prices.astype("float64").reindex(full)


def check_fresh(series: PriceSeries, now: datetime, max_age: timedelta) -> None:
    """Raise :class:`StaleDataError` when the last priced hour is older than ``max_age``."""
    if now.tzinfo is None:
        raise PriceDataError("check_fresh needs a tz-aware 'now'")
    valid = series.prices.dropna()
    if valid.empty:
        raise StaleDataError(f"{series.market}/{series.zone}: no prices at all")
    last = pd.Timestamp(valid.index[-1]).to_pydatetime()
    age = now - last
    if age > max_age:
        raise StaleDataError(
            f"{series.market}/{series.zone} {series.kind}: last price at {last.isoformat()} is "
            f"{age} old, more than the allowed {max_age}"
        )


_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


def _parse_flags(column: pd.Series, what: str) -> np.ndarray:
    text = column.astype(str).str.strip().str.lower()
    unknown = text[~text.isin(_TRUE | _FALSE)]
    if len(unknown):
        raise PriceDataError(f"{what}: DST flag {unknown.iloc[0]!r} is not true/false")
    return text.isin(_TRUE).to_numpy()


def load_csv(
    path: Path,
    *,
    timestamp_col: str,
    price_col: str,
    tz: str = "UTC",
    market: str = "CSV",
    zone: str = "",
    kind: PriceKind = PriceKind.DAY_AHEAD,
    currency: str = "EUR",
    gaps: GapPolicy = "raise",
    dst_flag_col: str | None = None,
) -> PriceSeries:
    """Load a generic CSV (optionally gzip) of hour-start timestamps and prices.

    Timestamps with an offset are taken as they are; naive ones are local wall-clock times in
    ``tz`` and converted with :func:`local_to_utc` (``dst_flag_col`` True = first occurrence).
    """
    frame = pd.read_csv(path, skipinitialspace=True, keep_default_na=False, dtype=str)
    frame.columns = [str(c).strip() for c in frame.columns]
    for col in (timestamp_col, price_col):
        if col not in frame.columns:
            raise PriceDataError(f"{path}: no column {col!r} (columns: {list(frame.columns)})")
    raw = pd.to_datetime(frame[timestamp_col], utc=False, format="mixed")
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        index = pd.DatetimeIndex(raw).tz_convert("UTC")
    else:
        flag = _parse_flags(frame[dst_flag_col], str(path)) if dst_flag_col else None
        index = local_to_utc(pd.DatetimeIndex(raw), tz, flag)
    raw_price = frame[price_col].astype(str).str.strip()
    blank = raw_price.str.lower().isin(["", "nan", "na", "none"])  # an empty cell is a gap
    values = pd.to_numeric(raw_price.where(~blank), errors="coerce")
    bad = raw_price[values.isna() & ~blank]
    if len(bad):
        raise PriceDataError(f"{path}: non-numeric price {bad.iloc[0]!r} in column {price_col!r}")
    series = pd.Series(values.to_numpy(dtype="float64"), index=index, name="price")
    series = validate_hourly(series, gaps, what=str(path))
    return PriceSeries(
        market=market,
        zone=zone,
        kind=kind,
        timezone=tz,
        currency=currency,
        prices=series,
        source=str(path),
    )


@dataclass(frozen=True)
class EpfDataset:
    """An epftoolbox-layout file as a market-day grid: one row per local day, 24 hourly slots.

    The files hold 24 values per local day whatever the DST change did: the spring day's
    non-existent 02:00 slot is an interpolation of its neighbours, the autumn day's 02:00 slot an
    average of the two real 02:00 hours. The forecaster works on this 24-slot grid exactly as the
    published benchmark did; :meth:`to_price_series` turns it into true UTC hours.
    """

    market: str
    days: pd.DatetimeIndex  # local calendar days, naive
    price: np.ndarray  # (n_days, 24)
    exog: np.ndarray  # (n_days, 24, n_exog)
    exog_names: tuple[str, ...]
    timezone: str
    currency: str = "EUR"
    source: str = ""
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def n_days(self) -> int:
        """Number of market days."""
        return int(self.price.shape[0])

    def to_price_series(self, zone: str = "") -> PriceSeries:
        """The prices on true UTC hours: the spring day's artificial 02:00 slot is dropped (the hour
        does not exist), and on the autumn day the averaged slot is put on the first 02:00 hour
        while the second is left NaN as an explicit gap (its real value is not in the file)."""
        naive = pd.DatetimeIndex(
            np.repeat(self.days.values, 24)
            + np.tile(np.arange(24), self.n_days) * np.timedelta64(1, "h")
        )
        values = self.price.reshape(-1)
        first = naive.tz_localize(self.timezone, ambiguous=True, nonexistent="NaT")
        second = naive.tz_localize(self.timezone, ambiguous=False, nonexistent="NaT")
        exists = np.asarray(~np.asarray(first.isna()))
        repeated = exists & np.asarray(first != second)
        stamps = first[exists].tz_convert("UTC").append(second[repeated].tz_convert("UTC"))
        data = np.concatenate([values[exists], np.full(int(repeated.sum()), np.nan)])
        series = pd.Series(data, index=stamps, name="price").sort_index()
        return PriceSeries(
            market=self.market,
            zone=zone or self.market,
            kind=PriceKind.DAY_AHEAD,
            timezone=self.timezone,
            currency=self.currency,
            prices=series,
            source=self.source,
        )


def epftoolbox_path(data_dir: Path, market: str) -> Path:
    """Path of a shared epftoolbox market file under the shared data dir."""
    return data_dir / "electricity" / "epftoolbox" / f"{market}.csv.gz"


def load_epftoolbox(
    path: Path, market: str | None = None, timezone: str | None = None
) -> EpfDataset:
    """Load a file in the epftoolbox layout: timestamp, price, exogenous 1, exogenous 2.

    Requires whole days of 24 rows on consecutive dates; NaN anywhere raises
    :class:`MissingHoursError` (the rolling protocol cannot skip hours without shifting them).
    """
    name = market or Path(path).name.split(".")[0].upper()
    tz = timezone or MARKET_TIMEZONES.get(name, "UTC")
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as handle:
        frame = pd.read_csv(handle)
    if frame.shape[1] < 3:
        raise PriceDataError(f"{path}: need timestamp, price and at least one exogenous column")
    stamps = pd.to_datetime(frame.iloc[:, 0])
    if stamps.isna().any():
        raise PriceDataError(f"{path}: unparseable timestamp in row {int(stamps.isna().argmax())}")
    if len(frame) % 24:
        raise MissingHoursError(f"{path}: {len(frame)} rows is not whole days of 24 hours")
    hours = stamps.dt.hour.to_numpy().reshape(-1, 24)
    if not (hours == np.arange(24)).all():
        bad_day = int(np.argmax((hours != np.arange(24)).any(axis=1)))
        raise MissingHoursError(
            f"{path}: day starting {stamps.iloc[bad_day * 24]} does not have hours 0..23 in order"
        )
    days = pd.DatetimeIndex(stamps.iloc[::24].dt.normalize().to_numpy())
    steps = np.diff(days.values).astype("timedelta64[D]").astype(int)
    if len(steps) and (steps != 1).any():
        k = int(np.argmax(steps != 1))
        raise MissingHoursError(f"{path}: days jump from {days[k].date()} to {days[k + 1].date()}")
    values = frame.iloc[:, 1:].apply(pd.to_numeric, errors="coerce").to_numpy(dtype="float64")
    if np.isnan(values).any():
        row, col = np.argwhere(np.isnan(values))[0]
        raise MissingHoursError(
            f"{path}: NaN or non-numeric in column {frame.columns[col + 1].strip()!r} "
            f"at {stamps.iloc[row]}"
        )
    n_days = len(days)
    price = values[:, 0].reshape(n_days, 24)
    exog = values[:, 1:].reshape(n_days, 24, values.shape[1] - 1)
    names = tuple(str(c).strip() for c in frame.columns[2:])
    notes = {"negative_hours": int((price < 0).sum())}
    logger.info(
        "loaded epftoolbox market=%s days=%d first=%s last=%s negative_hours=%d",
        name,
        n_days,
        days[0].date(),
        days[-1].date(),
        notes["negative_hours"],
    )
    return EpfDataset(
        market=name,
        days=days,
        price=price,
        exog=exog,
        exog_names=names,
        timezone=tz,
        currency=MARKET_CURRENCIES.get(name, "EUR"),
        source=str(path),
        notes=notes,
    )
