"""Live use of the forecaster: p10/p50/p90 for one market day on true UTC hours, for the planner.

The models work on the 24-slot market-day grid of the epftoolbox layout; the forecast is put on
the day's real UTC hours: on a 23-hour day the non-existent 02:00 slot is dropped, on a 25-hour
day the 02:00 slot's forecast serves both 02:00 hours (a forecast, unlike a price, may repeat).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecasting.evaluate import run_rolling
from forecasting.lear import LEAR_WINDOWS
from forecasting.mlp import MLP_REFIT_EVERY, MLP_SEEDS
from forecasting.prices import EpfDataset, local_day_hours

FORECAST_COLUMNS = ("p10", "p50", "p90")


def slots_to_utc(day: pd.Timestamp, tz: str, slots: np.ndarray) -> pd.DataFrame:
    """Put a (24, 3) array of p10/p50/p90 per local slot on the day's UTC hours (23, 24 or 25)."""
    hours = local_day_hours(day.date(), tz)
    wall = hours.tz_convert(tz).hour
    return pd.DataFrame(slots[np.asarray(wall)], index=hours, columns=list(FORECAST_COLUMNS))


def forecast_day(
    dataset: EpfDataset,
    day: pd.Timestamp,
    windows: Sequence[int] = LEAR_WINDOWS,
    warmup_days: int = 28,
    gbm_refit_every: int = 7,
    mlp_refit_every: int = MLP_REFIT_EVERY,
    mlp_seeds: tuple[int, ...] = MLP_SEEDS,
) -> pd.DataFrame:
    """Forecast local market day ``day`` from the days before it (its own prices are not read;
    its exogenous day-ahead forecasts are). The combination is the p50; the band is conformal on
    the previous ``warmup_days`` days, which are forecast the same way first.

    Returns a frame indexed by the day's UTC hours with columns p10, p50, p90.
    """
    target = pd.Timestamp(day).normalize()
    if target not in dataset.days:
        raise ValueError(
            f"{dataset.market}: {target.date()} not in the data "
            f"({dataset.days[0].date()} .. {dataset.days[-1].date()}); add its exogenous row"
        )
    index = int(dataset.days.searchsorted(target))
    result = run_rolling(
        dataset,
        test_days=dataset.n_days - index,
        n_days=1,
        windows=windows,
        warmup_days=warmup_days,
        gbm_refit_every=gbm_refit_every,
        mlp_refit_every=mlp_refit_every,
        mlp_seeds=mlp_seeds,
    )
    slots = np.column_stack([result.p10[0], result.forecasts["Combination"][0], result.p90[0]])
    return slots_to_utc(target, dataset.timezone, slots)
