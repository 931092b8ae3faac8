"""Day-ahead feature matrices on the 24-slot market-day grid, built once per market (vectorized).

Row ``d`` of every matrix describes target day ``d`` with information available at the day-ahead
auction of day ``d - 1``: prices up to day ``d - 1`` and the exogenous day-ahead forecasts for
day ``d`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRICE_LAGS: tuple[int, ...] = (1, 2, 3, 7)
EXOG_LAGS: tuple[int, ...] = (0, 1, 7)
FIRST_USABLE_DAY = 7  # the largest lag: rows before it have no complete feature set


@dataclass(frozen=True)
class FeatureMatrix:
    """The LEAR feature set for every day: lagged 24-hour price and exogenous profiles + weekday."""

    values: np.ndarray  # (n_days, n_features); rows < FIRST_USABLE_DAY are NaN
    n_dummies: int  # trailing weekday dummy columns, never scaled
    names: tuple[str, ...]


def _lag_days(matrix: np.ndarray, lag: int) -> np.ndarray:
    """Shift a (n_days, ...) array down by ``lag`` days, NaN-padding the top."""
    out = np.full_like(matrix, np.nan, dtype="float64")
    if lag == 0:
        out[:] = matrix
    else:
        out[lag:] = matrix[:-lag]
    return out


def lear_features(price: np.ndarray, exog: np.ndarray, weekday: np.ndarray) -> FeatureMatrix:
    """Build the epftoolbox LEAR feature set: prices d-1, d-2, d-3, d-7 (24 h each), each
    exogenous series at d, d-1, d-7 (24 h each), and 7 weekday dummies of day d.

    ``price`` is (n_days, 24), ``exog`` (n_days, 24, n_exog), ``weekday`` (n_days,) with 0=Monday.
    """
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for lag in PRICE_LAGS:
        blocks.append(_lag_days(price, lag))
        names.extend(f"price_d-{lag}_h{h}" for h in range(24))
    for k in range(exog.shape[2]):
        for lag in EXOG_LAGS:
            blocks.append(_lag_days(exog[:, :, k], lag))
            names.extend(f"exog{k + 1}_d-{lag}_h{h}" for h in range(24))
    dummies = np.zeros((price.shape[0], 7))
    dummies[np.arange(price.shape[0]), weekday] = 1.0
    blocks.append(dummies)
    names.extend(f"weekday_{i}" for i in range(7))
    values = np.concatenate(blocks, axis=1)
    values[:FIRST_USABLE_DAY] = np.nan
    return FeatureMatrix(values=values, n_dummies=7, names=tuple(names))
