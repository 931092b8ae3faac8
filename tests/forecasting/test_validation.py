"""Combination rules chosen on validation days: online weights, no look-ahead, the choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from controller.cli.main import app
from forecasting.evaluate import run_rolling
from forecasting.prices import epftoolbox_path, load_epftoolbox
from forecasting.validation import (
    CANDIDATE_RULES,
    CombinationRule,
    apply_rule,
    choose_rule,
    rule_errors,
)

CURRENT = next(iter(CANDIDATE_RULES))


def _members(n_days: int = 40) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(7)
    actual = 40.0 + rng.normal(0.0, 5.0, (n_days, 24))
    forecasts = {
        "LEAR Ensemble": actual + rng.normal(0.0, 1.0, (n_days, 24)),
        "GBM": actual + rng.normal(0.0, 3.0, (n_days, 24)),
    }
    return forecasts, actual


def test_equal_rule_is_the_plain_mean() -> None:
    forecasts, actual = _members()
    rule = CombinationRule(("LEAR Ensemble", "GBM"), 0)
    expected = (forecasts["LEAR Ensemble"] + forecasts["GBM"]) / 2
    np.testing.assert_allclose(apply_rule(forecasts, actual, rule), expected)


def test_inverse_mae_rule_favours_the_better_member_and_never_looks_ahead() -> None:
    forecasts, actual = _members()
    rule = CombinationRule(("LEAR Ensemble", "GBM"), 28)
    combined = apply_rule(forecasts, actual, rule)
    # day 0 has no past: equal weights
    np.testing.assert_allclose(
        combined[0], (forecasts["LEAR Ensemble"][0] + forecasts["GBM"][0]) / 2
    )
    # later days lean to the 3x more accurate member
    gap_lear = np.abs(combined[30:] - forecasts["LEAR Ensemble"][30:]).mean()
    gap_gbm = np.abs(combined[30:] - forecasts["GBM"][30:]).mean()
    assert gap_lear < gap_gbm / 2
    # changing prices from day 20 on leaves days 0..20 unchanged (day 20 only sees days < 20)
    shifted = actual.copy()
    shifted[20:] += 100.0
    again = apply_rule(forecasts, shifted, rule)
    np.testing.assert_array_equal(again[:21], combined[:21])
    assert not np.allclose(again[21:], combined[21:])


def test_current_rule_reproduces_the_evaluation_combination(data_dir: Path) -> None:
    dataset = load_epftoolbox(epftoolbox_path(data_dir, "NP"))
    result = run_rolling(
        dataset,
        n_days=10,
        windows=(56, 84),
        warmup_days=0,
        gbm_window=364,
        gbm_refit_every=30,
        gbm_max_iter=40,
        mlp_refit_every=30,
        mlp_window=364,
        mlp_seeds=(0,),
    )
    rebuilt = apply_rule(result.forecasts, result.actual, CANDIDATE_RULES[CURRENT])
    np.testing.assert_allclose(rebuilt, result.forecasts["Combination"], rtol=1e-12)
    errors = rule_errors(result, {CURRENT: CANDIDATE_RULES[CURRENT]}, skip_days=2)
    assert set(errors) == {CURRENT, "LEAR 56", "LEAR 84", "LEAR Ensemble", "GBM", "MLP"}
    with pytest.raises(ValueError, match="more than 10 days"):
        rule_errors(result, skip_days=10)


def test_per_hour_rule_weighs_each_hour_by_its_own_errors() -> None:
    forecasts, actual = _members(60)
    # LEAR is off by 1 in the morning and 3 in the afternoon, GBM the other way round
    morning = np.arange(24) < 12
    forecasts["LEAR Ensemble"] = actual + np.where(morning, 1.0, 3.0)
    forecasts["GBM"] = actual + np.where(morning, 3.0, 1.0)
    forecasts["MLP"] = actual - 2.0
    per_hour = apply_rule(forecasts, actual, CANDIDATE_RULES[CURRENT])
    assert CANDIDATE_RULES[CURRENT].per_hour and CANDIDATE_RULES[CURRENT].lookback == 28
    # day 0: equal weights, the plain mean of the three
    np.testing.assert_allclose(per_hour[0] - actual[0], 2.0 / 3.0, rtol=1e-12)
    # later: weights 1/1 : 1/3 : 1/2 = 6/11, 2/11, 3/11 in the morning (mirrored after noon)
    # -> error 6/11 * 1 + 2/11 * 3 - 3/11 * 2 = 6/11 every hour
    np.testing.assert_allclose(per_hour[1:] - actual[1:], 6.0 / 11.0, rtol=1e-12)
    # one weight for the whole day cannot do that: all members average 2 over the day
    glob = apply_rule(
        forecasts, actual, CombinationRule(("LEAR Ensemble", "GBM", "MLP"), 28, per_hour=False)
    )
    np.testing.assert_allclose(glob[1:] - actual[1:], 2.0 / 3.0, rtol=1e-12)


def test_choose_rule_takes_the_lowest_mean_ratio() -> None:
    names = list(CANDIDATE_RULES)
    a = dict.fromkeys(names, 2.0)
    b = dict.fromkeys(names, 10.0)
    a[names[1]] = 1.9  # 5 % better on the cheap market
    b[names[1]] = 10.2  # 2 % worse on the expensive one
    best, ratios = choose_rule({"A": a, "B": b})
    assert best == names[1]
    assert ratios[names[1]] == pytest.approx((0.95 + 1.02) / 2)
    assert ratios[CURRENT] == 1.0


def test_validate_cli_rejects_unknown_market() -> None:
    result = CliRunner().invoke(app, ["forecast", "validate", "--market", "XX"])
    assert result.exit_code != 0
    assert "unknown market" in result.output
