"""One live day-ahead forecast on real data, placed on the true UTC hours of DST days."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.day_ahead import forecast_day, slots_to_utc
from forecasting.prices import epftoolbox_path, load_epftoolbox


def test_slots_on_dst_days() -> None:
    slots = np.column_stack([np.arange(24.0) - 1, np.arange(24.0), np.arange(24.0) + 1])
    spring = slots_to_utc(pd.Timestamp("2016-03-27"), "Europe/Berlin", slots)
    assert len(spring) == 23 and 2.0 not in spring["p50"].to_numpy()
    assert spring.index[0] == pd.Timestamp("2016-03-26 23:00", tz="UTC")
    autumn = slots_to_utc(pd.Timestamp("2016-10-30"), "Europe/Berlin", slots)
    assert len(autumn) == 25 and list(autumn["p50"].iloc[1:5]) == [1.0, 2.0, 2.0, 3.0]
    assert autumn.index.is_unique


def test_forecast_one_german_day_ignores_its_own_prices(data_dir: Path) -> None:
    germany = load_epftoolbox(epftoolbox_path(data_dir, "DE"))
    day = pd.Timestamp("2017-10-29")  # 25-hour day in the test period
    kwargs = {
        "windows": (56, 84),
        "warmup_days": 14,
        "gbm_refit_every": 30,
        "mlp_refit_every": 30,
        "mlp_seeds": (0,),
    }
    forecast = forecast_day(germany, day, **kwargs)
    assert len(forecast) == 25 and list(forecast.columns) == ["p10", "p50", "p90"]
    assert (forecast["p10"] <= forecast["p90"]).all()
    index = int(germany.days.get_loc(day))
    actual = germany.price[index]  # a stormy Sunday: prices down to -83 EUR/MWh
    slots = np.delete(forecast["p50"].to_numpy(), 3)  # the repeated 02:00 hour back to 24 slots
    assert np.abs(slots - actual).mean() < np.abs(germany.price[index - 7] - actual).mean()
    # the day's own prices are never read: garbling them changes nothing
    garbled = germany.price.copy()
    garbled[index] = 1e6
    altered = type(germany)(**{**germany.__dict__, "price": garbled})
    pd.testing.assert_frame_equal(forecast_day(altered, day, **kwargs), forecast)
    with pytest.raises(ValueError, match="not in the data"):
        forecast_day(germany, pd.Timestamp("2030-01-01"), **kwargs)
