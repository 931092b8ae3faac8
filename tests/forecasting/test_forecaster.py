"""LEAR, GBM and the rolling protocol on short slices of the real epftoolbox data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from forecasting.evaluate import evaluation_report, load_published_forecasts, run_rolling
from forecasting.features import lear_features
from forecasting.gbm import fit_gbm, gbm_features, predict_gbm
from forecasting.lear import AsinhMedianScaler, lear_forecast_day
from forecasting.mlp import fit_mlp, predict_mlp
from forecasting.prices import EpfDataset, epftoolbox_path, load_epftoolbox


@pytest.fixture(scope="module")
def np_data(data_dir: Path) -> EpfDataset:
    return load_epftoolbox(epftoolbox_path(data_dir, "NP"))


def test_asinh_median_scaler_round_trips(np_data: EpfDataset) -> None:
    prices = np_data.price[:400]
    scaler = AsinhMedianScaler.fit(prices)
    scaled = scaler.transform(prices)
    assert np.allclose(np.median(scaled, axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaler.inverse(scaled), prices, rtol=1e-10, atol=1e-9)


def test_lear_features_match_the_epftoolbox_layout(np_data: EpfDataset) -> None:
    feats = lear_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    assert feats.values.shape == (np_data.n_days, 247)
    day = 100
    row = feats.values[day]
    np.testing.assert_array_equal(row[:24], np_data.price[day - 1])
    np.testing.assert_array_equal(row[72:96], np_data.price[day - 7])
    np.testing.assert_array_equal(row[96:120], np_data.exog[day, :, 0])  # exogenous of day d
    assert row[-7:].sum() == 1.0 and row[-7 + np_data.days[day].day_of_week] == 1.0
    assert np.isnan(feats.values[6]).all()


def test_lear_beats_weekly_naive_on_first_test_days(np_data: EpfDataset) -> None:
    feats = lear_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    first_test = np_data.n_days - 728
    errors, naive = [], []
    warm: dict[int, np.ndarray] = {}
    for day in (first_test, first_test + 1):
        out = lear_forecast_day(feats.values, np_data.price, day, windows=(56, 84), warm=warm)
        assert set(out) == {56, 84} and all(f.shape == (24,) for f in out.values())
        ensemble = np.mean(list(out.values()), axis=0)
        errors.append(np.abs(ensemble - np_data.price[day]).mean())
        naive.append(np.abs(np_data.price[day - 7] - np_data.price[day]).mean())
    assert set(warm) == {56, 84} and warm[56].shape == (247, 24)
    assert np.mean(errors) < np.mean(naive)
    assert np.mean(errors) < 3.0  # EUR/MWh on NP's first two test days (naive: ~5)


def _week_errors(
    data: EpfDataset, first: int, forecast_of: Callable[[int], np.ndarray]
) -> tuple[list[float], list[float]]:
    """Daily MAE of a forecaster and of the weekly naive over the 7 days from `first`."""
    errors, naive = [], []
    for day in range(first, first + 7):
        forecast = forecast_of(day)
        assert forecast.shape == (24,) and np.isfinite(forecast).all()
        errors.append(float(np.abs(forecast - data.price[day]).mean()))
        naive.append(float(np.abs(data.price[day - 7] - data.price[day]).mean()))
    return errors, naive


def test_gbm_forecast_beats_weekly_naive(np_data: EpfDataset) -> None:
    feats = gbm_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    first_test = np_data.n_days - 728
    model = fit_gbm(feats, np_data.price, first_test - 364, first_test, max_iter=60)
    errors, naive = _week_errors(np_data, first_test, lambda day: predict_gbm(model, feats, day))
    assert np.mean(errors) < np.mean(naive)


def test_mlp_forecast_beats_weekly_naive_and_averages_its_seeds(np_data: EpfDataset) -> None:
    feats = lear_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    first_test = np_data.n_days - 728
    model = fit_mlp(feats, np_data.price, first_test - 364, first_test, seeds=(0, 1))
    assert len(model.networks) == 2
    errors, naive = _week_errors(np_data, first_test, lambda day: predict_mlp(model, feats, day))
    assert np.mean(errors) < np.mean(naive)
    assert np.mean(errors) < 4.0  # EUR/MWh on NP's first test week
    # the forecast is the seeds' mean in the scaled space, mapped back to prices
    one = [
        type(model)((net,), model.x_scaler, model.y_scaler, model.n_dummies)
        for net in model.networks
    ]
    scaled = [model.y_scaler.transform(predict_mlp(m, feats, first_test)[None, :]) for m in one]
    expected = model.y_scaler.inverse(np.mean(scaled, axis=0))[0]
    np.testing.assert_allclose(predict_mlp(model, feats, first_test), expected, rtol=1e-9)
    # only days before ``end`` are read: garbling later prices changes nothing
    garbled = np_data.price.copy()
    garbled[first_test:] = 1e4
    again = fit_mlp(feats, garbled, first_test - 364, first_test, seeds=(0, 1))
    np.testing.assert_array_equal(
        predict_mlp(again, feats, first_test), predict_mlp(model, feats, first_test)
    )
    with pytest.raises(ValueError, match="at least 14"):
        fit_mlp(feats, np_data.price, first_test - 5, first_test)


def test_rolling_protocol_short_run(np_data: EpfDataset, data_dir: Path) -> None:
    result = run_rolling(
        np_data,
        n_days=8,
        windows=(56, 84),
        warmup_days=14,
        gbm_window=364,
        gbm_refit_every=30,
        gbm_max_iter=60,
        mlp_refit_every=30,
        mlp_window=364,
        mlp_seeds=(0,),
    )
    assert result.actual.shape == (8, 24)
    assert str(result.days[0].date()) == "2016-12-27"  # first test day of NP in the paper
    for name in ("LEAR 56", "LEAR 84", "LEAR Ensemble", "GBM", "MLP", "Combination"):
        assert result.forecasts[name].shape == (8, 24)
        assert np.isfinite(result.forecasts[name]).all()
    assert (result.p10 <= result.p90).all()
    assert 0.0 <= result.coverage() <= 1.0
    published = load_published_forecasts(
        data_dir / "electricity" / "epftoolbox" / "forecasts_paper2021_NP_DNN_LEAR.csv.gz"
    )
    report = evaluation_report(result, published)
    models = report["models"]
    assert isinstance(models, dict)
    assert models["Combination"]["rMAE"] < 1.0  # better than the weekly naive
    frame = result.to_frame()
    assert len(frame) == 8 * 24 and {"actual", "p10", "p90", "Combination"} <= set(frame.columns)


def _epftoolbox_row(price: np.ndarray, exog: np.ndarray, weekday: int, day: int) -> np.ndarray:
    """One input row in epftoolbox's own order (``LEAR._build_and_split_XYs``), built from the
    flat hourly series by the same index arithmetic: for each hour the prices of d-1, d-2, d-3,
    d-7; then for each hour the exogenous series at d-1 and d-7 followed by d; then the weekday."""
    flat_price = price.reshape(-1)
    flat_exog = exog.reshape(-1, exog.shape[2])
    n_exog = exog.shape[2]
    row: list[float] = []
    for hour in range(24):
        for past_day in (1, 2, 3, 7):
            row.append(flat_price[day * 24 + hour - 24 * past_day])
    for hour in range(24):
        for past_day in (1, 7):
            for k in range(n_exog):
                row.append(flat_exog[day * 24 + hour - 24 * past_day, k])
        for k in range(n_exog):
            row.append(flat_exog[day * 24 + hour, k])
    row.extend(1.0 if d == weekday else 0.0 for d in range(7))
    return np.array(row)


def test_lear_features_hold_the_epftoolbox_row_for_a_known_day(np_data: EpfDataset) -> None:
    weekday = np_data.days.day_of_week.to_numpy()
    feats = lear_features(np_data.price, np_data.exog, weekday)
    day = int(np_data.days.searchsorted(np.datetime64("2017-03-15")))
    theirs = _epftoolbox_row(np_data.price, np_data.exog, int(weekday[day]), day)
    # same 247 values; the order differs (ours is block-wise), which a LASSO does not see
    assert theirs.shape == feats.values[day].shape == (247,)
    np.testing.assert_array_equal(np.sort(theirs), np.sort(feats.values[day]))
    names = feats.names
    assert feats.values[day][names.index("price_d-7_h5")] == np_data.price[day - 7, 5]
    assert feats.values[day][names.index("exog2_d-7_h23")] == np_data.exog[day - 7, 23, 1]
    assert feats.values[day][names.index("exog1_d-0_h0")] == theirs[24 * 4 + 4]


def test_lear_window_trains_on_window_minus_one_week(np_data: EpfDataset) -> None:
    """A 56-day window is the last 56 days before d, the first week of it only feeding lags:
    the fit reads target days d-49 .. d-1 and nothing older."""
    feats = lear_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    day = np_data.n_days - 728
    base = lear_forecast_day(feats.values, np_data.price, day, windows=(56,))[56]
    for row, should_change in ((day - 50, False), (day - 49, True)):
        values = feats.values.copy()
        price = np_data.price.copy()
        values[row, :-7] *= 3.0
        price[row] += 40.0
        out = lear_forecast_day(values, price, day, windows=(56,))[56]
        assert bool(np.abs(out - base).max() > 1e-6) is should_change, row


def test_long_window_lear_is_close_to_the_published_one(
    np_data: EpfDataset, data_dir: Path
) -> None:
    """Our 1456-day LEAR against the published LEAR 1456 column on NP's first three test days:
    same features, scaling, sample count and criterion, so the forecasts differ only by the
    penalty search (grid + coordinate descent instead of the exact LARS path)."""
    feats = lear_features(np_data.price, np_data.exog, np_data.days.day_of_week.to_numpy())
    first = np_data.n_days - 728
    ours = np.array(
        [
            lear_forecast_day(feats.values, np_data.price, first + i, windows=(1456,))[1456]
            for i in range(3)
        ]
    )
    published = load_published_forecasts(
        data_dir / "electricity" / "epftoolbox" / "forecasts_paper2021_NP_DNN_LEAR.csv.gz"
    )
    theirs = published["LEAR 1456"].to_numpy()[: 3 * 24].reshape(3, 24)
    gap = float(np.mean(np.abs(ours - theirs)))
    naive_gap = float(np.mean(np.abs(np_data.price[first - 7 : first - 4] - theirs)))
    assert gap < 0.4, gap  # EUR/MWh; measured 0.21 (NP prices ~ 30 EUR/MWh)
    assert gap < naive_gap / 5
