"""OHLCV bars for backtests: load the real BTC CSVs into numpy arrays, and build long minute series.

The shared files (see data/btc/SOURCES.md) are gzip CSV with the header
``timestamp,open,high,low,close,volume``; `timestamp` is the bar's open time in UTC ISO-8601.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


class PriceDataError(ValueError):
    """A price file is missing, malformed or inconsistent; the message names the file and the fault."""


@dataclass(frozen=True)
class Bars:
    """Bars as parallel numpy arrays; `timestamp` is the bar open time (datetime64[s], UTC)."""

    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.close.size)

    @property
    def bar_seconds(self) -> float:
        """Typical bar length in seconds (median spacing of the timestamps)."""
        if len(self) < 2:
            raise PriceDataError("need at least two bars to know the bar length")
        return float(np.median(np.diff(self.timestamp).astype("timedelta64[s]").astype(np.int64)))

    @property
    def bars_per_day(self) -> float:
        """Bars in one day at the typical bar length."""
        return 86400.0 / self.bar_seconds

    def slice(self, start: int, end: int) -> Bars:
        """Bars [start, end) as views."""
        return Bars(
            self.timestamp[start:end],
            self.open[start:end],
            self.high[start:end],
            self.low[start:end],
            self.close[start:end],
            self.volume[start:end],
        )

    def between(self, first: str, last: str) -> Bars:
        """Bars whose open time lies in [first, last) (ISO dates or times, UTC)."""
        lo = np.searchsorted(self.timestamp, np.datetime64(first, "s"), side="left")
        hi = np.searchsorted(self.timestamp, np.datetime64(last, "s"), side="left")
        if hi <= lo:
            raise PriceDataError(f"no bars between {first} and {last}")
        return self.slice(int(lo), int(hi))


def load_bars(path: str | Path) -> Bars:
    """Read a `timestamp,open,high,low,close,volume` CSV (plain or .gz) into Bars.

    Raises PriceDataError naming the file when it is missing, lacks a column, is unsorted or holds
    non-positive or non-finite prices.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise PriceDataError(f"{path}: price file not found")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise PriceDataError(f"{path}: cannot read as CSV: {exc}") from exc
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise PriceDataError(f"{path}: missing column(s) {missing}; expected header {COLUMNS}")
    if frame.empty:
        raise PriceDataError(f"{path}: no rows")
    try:
        stamps = pd.to_datetime(frame["timestamp"], utc=True)
    except (ValueError, TypeError) as exc:
        raise PriceDataError(f"{path}: bad timestamp: {exc}") from exc
    timestamp = stamps.dt.tz_localize(None).to_numpy().astype("datetime64[s]")
    if (np.diff(timestamp).astype(np.int64) <= 0).any():
        row = int(np.argmax(np.diff(timestamp).astype(np.int64) <= 0)) + 1
        raise PriceDataError(f"{path}: timestamps not strictly increasing at row {row}")
    arrays = {}
    for col in COLUMNS[1:]:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0.0 if col == "volume" else values <= 0.0)
        if bad.any():
            row = int(np.argmax(bad))
            raise PriceDataError(
                f"{path}: column {col!r} row {row} ({frame['timestamp'].iloc[row]}) holds "
                f"{str(frame[col].iloc[row])!r}; prices must be > 0 and volume >= 0"
            )
        arrays[col] = values
    logger.info("price bars loaded path=%s bars=%d", path, len(timestamp))
    return Bars(timestamp, **arrays)


def minute_bars_from_hours(hours: Bars, minutes: Bars, n_bars: int) -> Bars:
    """`n_bars` one-minute bars following the real hourly path with real intra-hour movement.

    Each hour of `hours` becomes 60 minute bars. Their shape comes from a real hour of `minutes`
    (taken in turn, cycling): the real minute log-closes minus their straight line from the hour's
    open to its close, added to the straight line from this hour's open to its close. So every
    built hour opens and closes exactly at the real hourly prices and moves inside like a real
    hour did. A minute opens at the previous minute's close; high/low are the max/min of open and
    close widened by the real minute's own high/low spread; volume is the real hour's volume split
    in the real minute's proportions.
    """
    n_hours = -(-n_bars // 60)
    if len(hours) < n_hours:
        raise PriceDataError(f"need {n_hours} hourly bars for {n_bars} minutes, have {len(hours)}")
    template = _minute_templates(minutes)
    h = hours.slice(0, n_hours)
    k = np.arange(n_hours) % template["shape"].shape[0]
    frac = np.arange(1, 61, dtype=np.float64) / 60.0
    log_open, log_close = np.log(h.open)[:, None], np.log(h.close)[:, None]
    log_path = log_open + (log_close - log_open) * frac + template["shape"][k]
    close = np.exp(log_path).ravel()
    open_ = np.empty_like(close)
    open_[0] = h.open[0]
    open_[1:] = close[:-1]
    open_.reshape(n_hours, 60)[:, 0] = h.open
    spread_hi = template["up"][k].ravel()
    spread_lo = template["down"][k].ravel()
    high = np.maximum(open_, close) * np.exp(spread_hi)
    low = np.minimum(open_, close) * np.exp(-spread_lo)
    volume = (h.volume[:, None] * template["volume_share"][k]).ravel()
    stamps = (h.timestamp[:, None] + np.arange(60).astype("timedelta64[m]")).ravel()
    return Bars(
        stamps[:n_bars].astype("datetime64[s]"),
        open_[:n_bars],
        high[:n_bars],
        low[:n_bars],
        close[:n_bars],
        volume[:n_bars],
    )


def _minute_templates(minutes: Bars) -> dict[str, np.ndarray]:
    """Per real full hour: log-close deviation from the open→close line, wick sizes, volume split."""
    minute_of_hour = (minutes.timestamp.astype(np.int64) // 60) % 60
    first = int(np.argmax(minute_of_hour == 0))
    n_hours = (len(minutes) - first) // 60
    if n_hours < 1:
        raise PriceDataError("minute bars hold no complete hour to take intra-hour shapes from")
    sl = slice(first, first + n_hours * 60)
    if (np.diff(minutes.timestamp[sl]).astype(np.int64) != 60).any():
        raise PriceDataError("minute bars used as intra-hour templates must be gap-free")
    o = np.log(minutes.open[sl]).reshape(n_hours, 60)
    c = np.log(minutes.close[sl]).reshape(n_hours, 60)
    hi = np.log(minutes.high[sl]).reshape(n_hours, 60)
    lo = np.log(minutes.low[sl]).reshape(n_hours, 60)
    frac = np.arange(1, 61, dtype=np.float64) / 60.0
    line = o[:, :1] + (c[:, -1:] - o[:, :1]) * frac
    vol = minutes.volume[sl].reshape(n_hours, 60)
    total = vol.sum(axis=1, keepdims=True)
    share = np.where(total > 0.0, vol / np.where(total > 0.0, total, 1.0), 1.0 / 60.0)
    return {
        "shape": c - line,
        "up": hi - np.maximum(o, c),
        "down": np.minimum(o, c) - lo,
        "volume_share": share,
    }
