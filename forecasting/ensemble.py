"""Forecast combination and split-conformal p10/p90 intervals, both from past out-of-sample errors.

Both only look at days strictly before the one being forecast, so they fit the rolling protocol.
"""

from __future__ import annotations

import numpy as np

COMBINE_LOOKBACK = 28  # days of past errors behind the combination weights
CONFORMAL_LOOKBACK = 56  # days of past residuals per hour behind the intervals
MIN_RESIDUAL_DAYS = 14


def inverse_mae_weights(
    past_forecasts: dict[str, np.ndarray], past_actual: np.ndarray
) -> dict[str, float]:
    """Weights proportional to 1 / MAE of each model over the past days given ((n, 24) arrays).

    With no past days every model gets the same weight.
    """
    names = list(past_forecasts)
    if past_actual.shape[0] == 0:
        return dict.fromkeys(names, 1.0 / len(names))
    inv = np.array(
        [1.0 / max(float(np.mean(np.abs(past_forecasts[n] - past_actual))), 1e-9) for n in names]
    )
    inv /= inv.sum()
    return {n: float(w) for n, w in zip(names, inv, strict=True)}


def inverse_mae_weights_per_hour(
    past_forecasts: dict[str, np.ndarray], past_actual: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-hour weights: for each of the 24 hours, proportional to 1 / MAE of each model on that
    hour over the past days given ((n, 24) arrays); each hour's weights sum to 1.

    With no past days every model gets the same weight in every hour.
    """
    names = list(past_forecasts)
    hours = past_actual.shape[1]
    if past_actual.shape[0] == 0:
        return {n: np.full(hours, 1.0 / len(names)) for n in names}
    inv = np.array(
        [
            1.0 / np.maximum(np.mean(np.abs(past_forecasts[n] - past_actual), axis=0), 1e-9)
            for n in names
        ]
    )
    inv /= inv.sum(axis=0)
    return {n: inv[k] for k, n in enumerate(names)}


def combine(
    forecasts: dict[str, np.ndarray], weights: dict[str, float] | dict[str, np.ndarray]
) -> np.ndarray:
    """Weighted average of the models' 24-hour forecasts (one weight per model, or 24)."""
    return np.sum([weights[n] * forecasts[n] for n in weights], axis=0)


def conformal_band(
    point: np.ndarray, past_residuals: np.ndarray, low: float = 0.10, high: float = 0.90
) -> tuple[np.ndarray, np.ndarray]:
    """p10/p90 per hour: the point forecast plus the empirical quantiles of that hour's past
    residuals (actual - forecast), ``past_residuals`` being (n_days, 24).

    Raises ValueError with fewer than MIN_RESIDUAL_DAYS past days.
    """
    if past_residuals.shape[0] < MIN_RESIDUAL_DAYS:
        raise ValueError(
            f"conformal band needs {MIN_RESIDUAL_DAYS} days of residuals, "
            f"got {past_residuals.shape[0]}"
        )
    lo = np.quantile(past_residuals, low, axis=0)
    hi = np.quantile(past_residuals, high, axis=0)
    return point + lo, point + hi


def coverage(actual: np.ndarray, p10: np.ndarray, p90: np.ndarray) -> float:
    """Share of hours whose actual price lies inside [p10, p90] (nominal 0.80)."""
    inside = (actual >= p10) & (actual <= p90)
    return float(np.mean(inside))
