"""Coins flowing into the portfolio per bar: mined by a fleet (from the real network history) or
deposited according to a file.

Mining: a fleet of H TH/s finds a share ``H / network hashrate`` of the day's blocks, so it earns

    coins/day = H * 1e12 / hashrate_hs * (subsidy_btc_day + fees_btc_day)

which equals ``H * 1e12 * 86400 / (difficulty * 2^32) * (subsidy + fees per block)`` because the
network file's hashrate is the implied one (blocks x difficulty x 2^32 / 86400). The subsidy is the
day's real total (so halving days mix both rates correctly). Fees are known only for
2024-02-06..2025-02-02; elsewhere `fee_fallback_fraction` x subsidy is used (default 0: subsidy
only, a conservative estimate).

Deposits reach the portfolio at the start of the bar after the interval in which they were mined:
``deposits[t]`` holds the coins mined during ``[timestamp[t-1], timestamp[t])`` (bar 0: the bar
length before its open), so a backtest never sells coins before they exist.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

NETWORK_FILE = "btc_network_daily_2009_2025.csv.gz"


class InflowError(ValueError):
    """Inflow input is missing, malformed or does not cover the bars; the message says which."""


@dataclass(frozen=True)
class NetworkHistory:
    """Daily network figures: UTC day, implied hashrate (H/s), subsidy and fees (BTC per day)."""

    day: np.ndarray
    hashrate_hs: np.ndarray
    subsidy_btc_day: np.ndarray
    fees_btc_day: np.ndarray


def load_network_history(path: str | Path) -> NetworkHistory:
    """Read the daily network table (bitcoin-network/SOURCES.md); a folder means its main file."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / NETWORK_FILE
    if not path.is_file():
        raise InflowError(f"{path}: network history file not found")
    frame = pd.read_csv(path)
    needed = ("date", "hashrate_hs", "subsidy_btc_day", "fees_btc_day_bccom")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InflowError(f"{path}: missing column(s) {missing}")
    frame = frame.dropna(subset=["hashrate_hs", "subsidy_btc_day"])
    frame = frame[frame["hashrate_hs"] > 0]
    day = pd.to_datetime(frame["date"]).to_numpy().astype("datetime64[D]")
    if (np.diff(day).astype(np.int64) <= 0).any():
        raise InflowError(f"{path}: dates not strictly increasing")
    return NetworkHistory(
        day=day,
        hashrate_hs=frame["hashrate_hs"].to_numpy(dtype=np.float64),
        subsidy_btc_day=frame["subsidy_btc_day"].to_numpy(dtype=np.float64),
        fees_btc_day=frame["fees_btc_day_bccom"].to_numpy(dtype=np.float64),
    )


def coins_per_day(
    history: NetworkHistory, fleet_hashrate_ths: float, fee_fallback_fraction: float = 0.0
) -> np.ndarray:
    """Expected coins mined per day by `fleet_hashrate_ths`, aligned with `history.day`."""
    if not math.isfinite(fleet_hashrate_ths) or fleet_hashrate_ths < 0.0:
        raise InflowError(f"fleet hashrate {fleet_hashrate_ths} TH/s must be finite and >= 0")
    if not 0.0 <= fee_fallback_fraction < 1.0:
        raise InflowError(f"fee_fallback_fraction={fee_fallback_fraction}: must be in [0, 1)")
    fees = np.where(
        np.isfinite(history.fees_btc_day),
        history.fees_btc_day,
        fee_fallback_fraction * history.subsidy_btc_day,
    )
    share = fleet_hashrate_ths * 1e12 / history.hashrate_hs
    return np.asarray(share * (history.subsidy_btc_day + fees), dtype=np.float64)


def mined_deposits(
    timestamp: np.ndarray,
    history: NetworkHistory,
    fleet_hashrate_ths: float,
    fee_fallback_fraction: float = 0.0,
) -> np.ndarray:
    """Coins arriving at each bar from a fleet of `fleet_hashrate_ths` (see the module docstring).

    Each interval is paid at the rate of the UTC day it starts in. Raises InflowError when a bar
    falls outside the network history.
    """
    stamps = np.asarray(timestamp).astype("datetime64[s]")
    if stamps.size == 0:
        return np.zeros(0)
    seconds = np.diff(stamps).astype(np.int64).astype(np.float64)
    first_len = float(np.median(seconds)) if seconds.size else 3600.0
    starts = np.concatenate(([stamps[0] - np.timedelta64(int(first_len), "s")], stamps[:-1]))
    lengths = np.concatenate(([first_len], seconds))
    days = starts.astype("datetime64[D]")
    idx = np.searchsorted(history.day, days)
    outside = (idx >= history.day.size) | (
        history.day[np.minimum(idx, history.day.size - 1)] != days
    )
    if outside.any():
        bad = days[int(np.argmax(outside))]
        raise InflowError(
            f"no network data for {bad}: the history covers {history.day[0]}..{history.day[-1]} "
            "(pass a deposits file for other periods)"
        )
    per_day = coins_per_day(history, fleet_hashrate_ths, fee_fallback_fraction)
    deposits = per_day[idx] * lengths / 86400.0
    logger.info(
        "mined inflow fleet_ths=%s bars=%d coins=%.8f",
        fleet_hashrate_ths,
        stamps.size,
        deposits.sum(),
    )
    return np.asarray(deposits, dtype=np.float64)


def deposits_from_file(path: str | Path, timestamp: np.ndarray) -> np.ndarray:
    """Coins per bar from a CSV with header ``timestamp,coins`` (UTC ISO-8601 times).

    A deposit at time T joins the first bar opening at or after T. Deposits before the first bar or
    after the last one raise InflowError (they would silently vanish otherwise).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InflowError(f"{path}: deposits file not found")
    frame = pd.read_csv(path)
    missing = [c for c in ("timestamp", "coins") if c not in frame.columns]
    if missing:
        raise InflowError(f"{path}: missing column(s) {missing}; expected header timestamp,coins")
    try:
        when = pd.to_datetime(frame["timestamp"], utc=True).dt.tz_localize(None)
    except (ValueError, TypeError) as exc:
        raise InflowError(f"{path}: bad timestamp: {exc}") from exc
    coins = pd.to_numeric(frame["coins"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(coins) | (coins < 0.0)
    if bad.any():
        row = int(np.argmax(bad))
        raise InflowError(f"{path}: row {row}: coins={frame['coins'].iloc[row]!r} is not >= 0")
    stamps = np.asarray(timestamp).astype("datetime64[s]")
    at = when.to_numpy().astype("datetime64[s]")
    idx = np.searchsorted(stamps, at, side="left")
    early = at < stamps[0]
    late = idx >= stamps.size
    if early.any() or late.any():
        row = int(np.argmax(early | late))
        raise InflowError(
            f"{path}: row {row}: deposit at {at[row]} lies outside the price bars "
            f"{stamps[0]}..{stamps[-1]}"
        )
    deposits = np.zeros(stamps.size)
    np.add.at(deposits, idx, coins)
    logger.info("deposits file path=%s rows=%d coins=%.8f", path, coins.size, coins.sum())
    return deposits
