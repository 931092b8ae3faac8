"""The epftoolbox evaluation protocol: daily recalibration over the test period, metrics, DM test.

For every test day d the models are recalibrated on prices up to d-1 (and the exogenous
day-ahead forecasts up to d), then forecast the 24 hours of d. The test period is the last 728
days of the file. A short warm-up before it (not scored) gives the combination weights and the
conformal intervals their first past errors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from forecasting.ensemble import (
    COMBINE_LOOKBACK,
    CONFORMAL_LOOKBACK,
    combine,
    conformal_band,
    coverage,
    inverse_mae_weights_per_hour,
)
from forecasting.features import FIRST_USABLE_DAY, lear_features
from forecasting.gbm import (
    GBM_MAX_ITER,
    GBM_REFIT_EVERY,
    GBM_WINDOW,
    GbmModel,
    fit_gbm,
    gbm_features,
    predict_gbm,
)
from forecasting.lear import LEAR_WINDOWS, lear_forecast_day
from forecasting.mlp import MLP_REFIT_EVERY, MLP_SEEDS, MLP_WINDOW, MlpModel, fit_mlp, predict_mlp
from forecasting.prices import EpfDataset

logger = logging.getLogger(__name__)

TEST_DAYS = 728
WARMUP_DAYS = 28
COMBINATION_MEMBERS = ("LEAR Ensemble", "GBM", "MLP")
OUR_MODELS = (*COMBINATION_MEMBERS, "Combination")


# ---------------------------------------------------------------- metrics


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(actual - forecast)))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((actual - forecast) ** 2)))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent: mean of 2|y - f| / (|y| + |f|); hours with y = f = 0 count 0."""
    num = 2.0 * np.abs(actual - forecast)
    den = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)
    return float(100.0 * np.mean(ratio))


def weekly_naive_mae(actual: np.ndarray) -> float:
    """MAE of the weekly naive forecast (price of the same hour 7 days earlier) computed inside
    the test period itself, so its first week is skipped (the epftoolbox rMAE convention)."""
    daily = actual.reshape(-1, 24)
    if daily.shape[0] <= 7:
        raise ValueError("rMAE needs more than 7 test days")
    return mae(daily[7:], daily[:-7])


def rmae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """MAE relative to the weekly naive forecast on the same test period."""
    return mae(actual, forecast) / weekly_naive_mae(actual)


@dataclass(frozen=True)
class DieboldMariano:
    """One-sided DM test; small p-value = the second forecast is significantly more accurate."""

    statistic: float
    p_value: float
    hours_significant: int  # univariate tests (one per hour) with p < 0.05


def diebold_mariano(
    actual: np.ndarray, first: np.ndarray, second: np.ndarray, norm_p: int = 1
) -> DieboldMariano:
    """DM test of H0 "``second`` is not more accurate than ``first``" on (n_days, 24) arrays.

    Multivariate version: the loss differential of a day is the p-norm of the first model's 24
    errors minus the second's. Also counts the hours whose own (univariate) test rejects at 5 %.
    """
    e1 = np.abs(actual - first) ** norm_p
    e2 = np.abs(actual - second) ** norm_p
    diff = e1.sum(axis=1) ** (1 / norm_p) - e2.sum(axis=1) ** (1 / norm_p)
    n = diff.shape[0]
    sd = float(np.std(diff, ddof=0))
    stat = float(np.mean(diff) / (sd / np.sqrt(n))) if sd > 0 else 0.0
    hourly = e1 - e2
    hsd = hourly.std(axis=0, ddof=0)
    hstat = np.divide(hourly.mean(axis=0), hsd / np.sqrt(n), out=np.zeros(24), where=hsd > 0)
    hp = 1.0 - norm.cdf(hstat)
    return DieboldMariano(
        statistic=stat,
        p_value=float(1.0 - norm.cdf(stat)),
        hours_significant=int((hp < 0.05).sum()),
    )


def metric_row(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """MAE, rMAE (weekly naive), sMAPE (%) and RMSE of one forecast over the test period."""
    return {
        "MAE": mae(actual, forecast),
        "rMAE": rmae(actual, forecast),
        "sMAPE": smape(actual, forecast),
        "RMSE": rmse(actual, forecast),
    }


# ---------------------------------------------------------------- published figures


def load_published_forecasts(path: Path) -> pd.DataFrame:
    """The paper's forecast file: one row per test hour, columns Real price, DNN 1..4, DNN
    Ensemble, LEAR 56..1456, LEAR Ensemble."""
    frame = pd.read_csv(path, index_col=0, parse_dates=True)
    frame.columns = [c.strip() for c in frame.columns]
    if "Real price" not in frame.columns or len(frame) % 24:
        raise ValueError(f"{path}: not an epftoolbox forecast file (columns {list(frame.columns)})")
    return frame


def load_reference_metrics(path: Path, market: str) -> dict[str, dict[str, float]]:
    """Published metrics per model for one market from reference_metrics_paper2021.csv."""
    frame = pd.read_csv(path)
    rows = frame[frame["market"] == market]
    return {
        str(r["model"]): {
            "MAE": float(r["MAE"]),
            "rMAE": float(r["rMAE_W"]),
            "sMAPE": float(r["sMAPE"]),
            "RMSE": float(r["RMSE"]),
        }
        for _, r in rows.iterrows()
    }


# ---------------------------------------------------------------- rolling protocol


@dataclass
class RollingResult:
    """Forecasts of every model for every scored day, intervals and timings."""

    market: str
    days: pd.DatetimeIndex
    actual: np.ndarray  # (n_days, 24)
    forecasts: dict[str, np.ndarray]  # name -> (n_days, 24)
    p10: np.ndarray
    p90: np.ndarray
    seconds: float
    weights: list[dict[str, np.ndarray]] = field(default_factory=list)  # 24 per member a day

    def coverage(self) -> float:
        """Share of hours inside the combination's p10-p90 band."""
        return coverage(self.actual, self.p10, self.p90)

    def to_frame(self) -> pd.DataFrame:
        """One row per hour: actual, every model's forecast, p10, p90."""
        index = pd.DatetimeIndex(
            [d + pd.Timedelta(hours=h) for d in self.days for h in range(24)], name="slot"
        )
        data = {"actual": self.actual.reshape(-1)}
        data.update({k: v.reshape(-1) for k, v in self.forecasts.items()})
        data["p10"] = self.p10.reshape(-1)
        data["p90"] = self.p90.reshape(-1)
        return pd.DataFrame(data, index=index)


def run_rolling(
    dataset: EpfDataset,
    test_days: int = TEST_DAYS,
    n_days: int | None = None,
    windows: Sequence[int] = LEAR_WINDOWS,
    warmup_days: int = WARMUP_DAYS,
    gbm_refit_every: int = GBM_REFIT_EVERY,
    gbm_window: int = GBM_WINDOW,
    gbm_max_iter: int = GBM_MAX_ITER,
    mlp_refit_every: int = MLP_REFIT_EVERY,
    mlp_window: int = MLP_WINDOW,
    mlp_seeds: tuple[int, ...] = MLP_SEEDS,
    progress: Callable[[int, int], None] | None = None,
) -> RollingResult:
    """Run the daily-recalibration protocol over the test period (its first ``n_days`` if given).

    Members: the LEAR ensemble (refit daily), the GBM and the MLP (refit every
    ``gbm_refit_every`` / ``mlp_refit_every`` days, forecasting daily from fresh features). The
    combination weighs them per hour by the inverse of their MAE on that hour over the previous
    COMBINE_LOOKBACK days (the rule chosen on the validation days, ``forecasting.validation``).

    Days ``[start - warmup_days, start)`` are forecast the same way but only feed the combination
    weights and the conformal residuals; they are not scored.
    """
    started = time.perf_counter()
    weekday = dataset.days.day_of_week.to_numpy()
    lear_x = lear_features(dataset.price, dataset.exog, weekday)
    gbm_x = gbm_features(dataset.price, dataset.exog, weekday)
    first_test = dataset.n_days - test_days
    last = dataset.n_days if n_days is None else min(dataset.n_days, first_test + n_days)
    begin = first_test - warmup_days
    min_history = max(windows) if windows else 0
    needed = FIRST_USABLE_DAY + warmup_days + min(56, min_history)
    if first_test < needed:
        raise ValueError(
            f"{dataset.market}: {dataset.n_days} days in the file leave {max(first_test, 0)} days "
            f"before the test period of {test_days}; need at least {needed}"
        )
    names = [f"LEAR {w}" for w in windows] + list(OUR_MODELS)
    out = {n: np.full((last - begin, 24), np.nan) for n in names}
    p10 = np.full((last - begin, 24), np.nan)
    p90 = np.full((last - begin, 24), np.nan)
    warm: dict[int, np.ndarray] = {}
    model: GbmModel | None = None
    mlp: MlpModel | None = None
    weights_log: list[dict[str, np.ndarray]] = []
    for i, day in enumerate(range(begin, last)):
        lear = lear_forecast_day(lear_x.values, dataset.price, day, windows, warm=warm)
        for w, f in lear.items():
            out[f"LEAR {w}"][i] = f
        out["LEAR Ensemble"][i] = np.mean(list(lear.values()), axis=0)
        if model is None or i % gbm_refit_every == 0:
            model = fit_gbm(
                gbm_x,
                dataset.price,
                max(FIRST_USABLE_DAY, day - gbm_window),
                day,
                max_iter=gbm_max_iter,
            )
        out["GBM"][i] = predict_gbm(model, gbm_x, day)
        if mlp is None or i % mlp_refit_every == 0:
            mlp = fit_mlp(lear_x, dataset.price, day - mlp_window, day, seeds=mlp_seeds)
        out["MLP"][i] = predict_mlp(mlp, lear_x, day)
        lo = max(0, i - COMBINE_LOOKBACK)
        past_actual = dataset.price[begin + lo : day]
        weights = inverse_mae_weights_per_hour(
            {n: out[n][lo:i] for n in COMBINATION_MEMBERS}, past_actual
        )
        weights_log.append(weights)
        out["Combination"][i] = combine({n: out[n][i] for n in COMBINATION_MEMBERS}, weights)
        rlo = max(0, i - CONFORMAL_LOOKBACK)
        residuals = dataset.price[begin + rlo : day] - out["Combination"][rlo:i]
        if residuals.shape[0] >= 14:
            p10[i], p90[i] = conformal_band(out["Combination"][i], residuals)
        if progress is not None:
            progress(i + 1, last - begin)
    scored = slice(warmup_days, last - begin)
    seconds = time.perf_counter() - started
    logger.info(
        "rolling evaluation done market=%s days=%d seconds=%.1f",
        dataset.market,
        last - first_test,
        seconds,
    )
    return RollingResult(
        market=dataset.market,
        days=dataset.days[first_test:last],
        actual=dataset.price[first_test:last],
        forecasts={k: v[scored] for k, v in out.items()},
        p10=p10[scored],
        p90=p90[scored],
        seconds=seconds,
        weights=weights_log[warmup_days:],
    )


# ---------------------------------------------------------------- report


def evaluation_report(
    result: RollingResult,
    published: pd.DataFrame | None = None,
    reference: dict[str, dict[str, float]] | None = None,
) -> dict[str, object]:
    """Metrics of our models and of the published forecasts over the same days, DM tests of
    ours against the published LEAR ensemble, interval coverage, and the paper's figures."""
    actual = result.actual
    n = actual.shape[0]
    models: dict[str, dict[str, float]] = {}
    for name, f in result.forecasts.items():
        models[name] = metric_row(actual, f)
    simple = np.mean([result.forecasts[n] for n in COMBINATION_MEMBERS], axis=0)
    models["Simple average"] = metric_row(actual, simple)
    report: dict[str, object] = {
        "market": result.market,
        "test_days": n,
        "first_day": str(result.days[0].date()),
        "last_day": str(result.days[-1].date()),
        "seconds": round(result.seconds, 1),
        "models": models,
        "interval": {"nominal": 0.8, "coverage": result.coverage()},
    }
    if published is not None:
        pub_actual = published["Real price"].to_numpy()[: n * 24].reshape(n, 24)
        if not np.allclose(pub_actual, actual):
            raise ValueError(
                f"{result.market}: published forecast file's real prices differ from the data file"
            )
        pub_models: dict[str, dict[str, float]] = {}
        for col in ("LEAR Ensemble", "DNN Ensemble"):
            pub_models[col] = metric_row(actual, published[col].to_numpy()[: n * 24].reshape(n, 24))
        report["published_same_days"] = pub_models
        lear_pub = published["LEAR Ensemble"].to_numpy()[: n * 24].reshape(n, 24)
        dnn_pub = published["DNN Ensemble"].to_numpy()[: n * 24].reshape(n, 24)
        dm: dict[str, dict[str, float | int]] = {}
        for name in OUR_MODELS:
            for ref_name, ref in (("LEAR", lear_pub), ("DNN", dnn_pub)):
                test = diebold_mariano(actual, ref, result.forecasts[name])
                dm[f"{name} vs published {ref_name}"] = {
                    "statistic": test.statistic,
                    "p_value": test.p_value,
                    "hours_significant": test.hours_significant,
                }
        report["diebold_mariano"] = dm
    if reference is not None:
        report["published_paper"] = {
            k: reference[k] for k in ("LEAR Ensemble", "DNN Ensemble") if k in reference
        }
    return report
