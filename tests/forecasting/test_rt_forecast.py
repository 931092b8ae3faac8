"""Real-time forecaster on real LZ_WEST prices: features without look-ahead, skill, intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.ercot import ERCOT_TZ, ercot_file, load_ercot_hourly
from forecasting.rt_forecast import (
    RtForecaster,
    RtForecastError,
    horizon_forecast,
    rt_features,
    walk_forward,
)


@pytest.fixture(scope="module")
def summer(data_dir: Path) -> pd.DataFrame:
    frame = load_ercot_hourly(ercot_file(data_dir), "LZ_WEST").frame()
    return frame.loc["2024-05-01 05:00":"2024-09-01 04:00"]


def test_features_use_only_the_past(summer: pd.DataFrame) -> None:
    feats = rt_features(summer["da"], summer["rt"], ERCOT_TZ)
    k = 1000
    changed = summer.copy()
    changed.iloc[k:, changed.columns.get_loc("rt")] = 9999.0
    feats2 = rt_features(changed["da"], changed["rt"], ERCOT_TZ)
    # row k uses RT up to k-1 only
    pd.testing.assert_frame_equal(feats.iloc[: k + 1], feats2.iloc[: k + 1])
    assert feats2["rt_1"].iloc[k + 1] == 9999.0
    assert feats["rt_1"].iloc[k] == summer["rt"].iloc[k - 1]


def test_walk_forward_beats_day_ahead_and_intervals_cover(summer: pd.DataFrame) -> None:
    start = pd.Timestamp("2024-08-01", tz=ERCOT_TZ).tz_convert("UTC")
    fc = walk_forward(summer["da"], summer["rt"], start, ERCOT_TZ, RtForecaster(max_iter=60))
    assert fc.index[0] == start and len(fc) == 31 * 24
    assert (fc["p10"] <= fc["p50"]).all() and (fc["p50"] <= fc["p90"]).all()
    rt = summer["rt"].reindex(fc.index)
    da = summer["da"].reindex(fc.index)
    mae = float((fc["p50"] - rt).abs().mean())
    mae_da = float((da - rt).abs().mean())
    assert mae < 0.8 * mae_da, (mae, mae_da)
    coverage = float(((rt >= fc["p10"]) & (rt <= fc["p90"])).mean())
    assert 0.6 <= coverage <= 0.95, coverage


def test_too_little_history_is_named(summer: pd.DataFrame) -> None:
    feats = rt_features(summer["da"], summer["rt"], ERCOT_TZ)
    with pytest.raises(RtForecastError, match="14 days"):
        RtForecaster().fit(feats.iloc[:100], summer["rt"].iloc[:100])
    with pytest.raises(RtForecastError, match="not fitted"):
        RtForecaster().predict(feats.iloc[:3])


def test_horizon_premium_fades_into_day_ahead() -> None:
    hours = pd.date_range("2024-08-20 17:00", periods=4, freq="h", tz="UTC")
    da = pd.Series([50.0, 60.0, 70.0, 80.0], index=hours)
    one = pd.Series({"p10": 70.0, "p50": 90.0, "p90": 130.0})
    out = horizon_forecast(one, da)
    assert out["p50"].tolist() == [90.0, 80.0, 80.0, 85.0]  # premium 40, 20, 10, 5
    assert np.allclose(out["p90"] - da, [80.0, 40.0, 20.0, 10.0])
