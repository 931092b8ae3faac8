"""Choosing the combination rule without the test period: candidate rules on validation days.

The validation period is the days just before each market's test period (and its warm-up),
forecast with the same daily-recalibration protocol (``run_rolling`` shifted back). Every
candidate is an online rule: the weights of day d come from errors of days before d only. The
rule used by ``run_rolling`` ("Combination") is the candidate with the lowest MAE relative to
the others, averaged over the four markets' validation periods; the test period is not read.

History: the first list (two members, LEAR ensemble + GBM) chose global inverse-MAE weights over
28 days. The MLP member and per-hour weights were then added as candidates; on the same
validation days the three-member per-hour rule had the lowest mean ratio and became the rule
(figures in bench/RESULTS.md). The previous default stays in the list for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from forecasting.ensemble import (
    COMBINE_LOOKBACK,
    combine,
    inverse_mae_weights,
    inverse_mae_weights_per_hour,
)
from forecasting.evaluate import (
    COMBINATION_MEMBERS,
    TEST_DAYS,
    WARMUP_DAYS,
    RollingResult,
    mae,
    run_rolling,
)
from forecasting.lear import LEAR_WINDOWS
from forecasting.prices import EpfDataset

VALIDATION_DAYS = 182
LEAR_MEMBERS = tuple(f"LEAR {w}" for w in LEAR_WINDOWS)


@dataclass(frozen=True)
class CombinationRule:
    """Weights over ``members``: inverse MAE over the last ``lookback`` days, or equal if 0;
    ``per_hour``: a separate weight per hour from that hour's errors only."""

    members: tuple[str, ...]
    lookback: int
    per_hour: bool = False


# The first rule is "current": what run_rolling's "Combination" does. The six rules from
# "(previous)" to "equal, four LEARs + GBM" were fixed before the first validation run; the last
# five, with the first, were added with the MLP member and scored on the same validation days.
TWO = ("LEAR Ensemble", "GBM")
CANDIDATE_RULES: dict[str, CombinationRule] = {
    "per-hour inverse MAE 28 d, LEAR ensemble + GBM + MLP (current)": CombinationRule(
        COMBINATION_MEMBERS, COMBINE_LOOKBACK, per_hour=True
    ),
    "inverse MAE 28 d, LEAR ensemble + GBM (previous)": CombinationRule(TWO, 28),
    "equal, LEAR ensemble + GBM": CombinationRule(("LEAR Ensemble", "GBM"), 0),
    "inverse MAE 56 d, LEAR ensemble + GBM": CombinationRule(("LEAR Ensemble", "GBM"), 56),
    "inverse MAE 28 d, four LEARs + GBM": CombinationRule((*LEAR_MEMBERS, "GBM"), 28),
    "inverse MAE 56 d, four LEARs + GBM": CombinationRule((*LEAR_MEMBERS, "GBM"), 56),
    "equal, four LEARs + GBM": CombinationRule((*LEAR_MEMBERS, "GBM"), 0),
    # added with the MLP member and per-hour weights
    "per-hour inverse MAE 28 d, LEAR ensemble + GBM": CombinationRule(TWO, 28, per_hour=True),
    "per-hour inverse MAE 56 d, LEAR ensemble + GBM": CombinationRule(TWO, 56, per_hour=True),
    "inverse MAE 28 d, LEAR ensemble + GBM + MLP": CombinationRule(COMBINATION_MEMBERS, 28),
    "equal, LEAR ensemble + GBM + MLP": CombinationRule(COMBINATION_MEMBERS, 0),
    "inverse MAE 28 d, LEAR ensemble + MLP": CombinationRule(("LEAR Ensemble", "MLP"), 28),
}


def apply_rule(
    forecasts: dict[str, np.ndarray], actual: np.ndarray, rule: CombinationRule
) -> np.ndarray:
    """The rule's combined forecast for every day of (n_days, 24) arrays, each day weighted by
    the members' errors over the previous ``rule.lookback`` days of the same arrays only."""
    out = np.empty_like(actual, dtype=float)
    for i in range(actual.shape[0]):
        today = {n: forecasts[n][i] for n in rule.members}
        weights: dict[str, float] | dict[str, np.ndarray]
        if rule.lookback == 0:
            weights = dict.fromkeys(rule.members, 1.0 / len(rule.members))
        else:
            lo = max(0, i - rule.lookback)
            past = {n: forecasts[n][lo:i] for n in rule.members}
            if rule.per_hour:
                weights = inverse_mae_weights_per_hour(past, actual[lo:i])
            else:
                weights = inverse_mae_weights(past, actual[lo:i])
        out[i] = combine(today, weights)
    return out


def rule_errors(
    result: RollingResult,
    rules: dict[str, CombinationRule] | None = None,
    skip_days: int = 56,
) -> dict[str, float]:
    """MAE of every candidate rule and every member over the days after ``skip_days`` (so each
    rule has its full lookback of past errors)."""
    chosen = CANDIDATE_RULES if rules is None else rules
    if result.actual.shape[0] <= skip_days:
        raise ValueError(f"need more than {skip_days} days, got {result.actual.shape[0]}")
    scored = slice(skip_days, None)
    out = {
        name: mae(result.actual[scored], apply_rule(result.forecasts, result.actual, rule)[scored])
        for name, rule in chosen.items()
    }
    for member in (*LEAR_MEMBERS, *COMBINATION_MEMBERS):
        if member in result.forecasts:
            out[member] = mae(result.actual[scored], result.forecasts[member][scored])
    return out


def run_validation(
    dataset: EpfDataset,
    days: int = VALIDATION_DAYS,
    windows: Sequence[int] = LEAR_WINDOWS,
    warmup_days: int = WARMUP_DAYS,
) -> RollingResult:
    """Forecast the ``days`` days just before the test period (after their own warm-up) with the
    evaluation protocol; the test period's prices are never read."""
    return run_rolling(
        dataset, test_days=TEST_DAYS + days, n_days=days, windows=windows, warmup_days=warmup_days
    )


def choose_rule(errors_by_market: dict[str, dict[str, float]]) -> tuple[str, dict[str, float]]:
    """The candidate with the lowest MAE relative to the current rule, averaged over markets
    (a ratio, so that no market's price level dominates). Returns (name, ratio per rule)."""
    current = next(iter(CANDIDATE_RULES))
    ratios = {
        name: float(np.mean([errs[name] / errs[current] for errs in errors_by_market.values()]))
        for name in CANDIDATE_RULES
    }
    return min(ratios, key=lambda n: ratios[n]), ratios
