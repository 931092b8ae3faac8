"""Mined inflow against the real daily network history, and the deposits file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from treasury.inflow import (
    InflowError,
    coins_per_day,
    deposits_from_file,
    load_network_history,
    mined_deposits,
)


@pytest.fixture(scope="module")
def network(data_dir: Path):  # type: ignore[no-untyped-def]
    return load_network_history(data_dir / "bitcoin-network")


def _day(network, day: str) -> int:  # type: ignore[no-untyped-def]
    return int(np.searchsorted(network.day, np.datetime64(day, "D")))


def test_coins_per_day_on_known_dates(network) -> None:  # type: ignore[no-untyped-def]
    per_day = coins_per_day(network, 1000.0)  # a 1 PH/s fleet
    # 2024-03-01: implied hashrate 6.074639257e20 H/s, subsidy 962.5 BTC, fees 59.1579814 BTC
    assert per_day[_day(network, "2024-03-01")] == pytest.approx(
        1e15 / 6.074639257e20 * (962.5 + 59.1579814)
    )
    # 2022-01-01 has no fee data: subsidy only (1075 BTC), or + 5 % with the fallback
    assert per_day[_day(network, "2022-01-01")] == pytest.approx(1e15 / 2.075324769e20 * 1075)
    with_fees = coins_per_day(network, 1000.0, fee_fallback_fraction=0.05)
    assert with_fees[_day(network, "2022-01-01")] == pytest.approx(1e15 / 2.075324769e20 * 1128.75)
    # halving day 2024-04-20 mixes the two subsidies: 130 blocks at 3.125 = 406.25 BTC
    assert per_day[_day(network, "2024-04-20")] == pytest.approx(
        1e15 / 5.582718124e20 * (406.25 + 1257.715445)
    )


def test_share_formula_equals_the_difficulty_formula(network) -> None:  # type: ignore[no-untyped-def]
    # coins/day = H * 86400 / (D * 2^32) * (subsidy per block + fees per block), D = 7.935122813e13
    i = _day(network, "2024-03-01")
    by_difficulty = 1e15 * 86400 / (7.935122813e13 * 2**32) * (6.25 + 59.1579814 / 154)
    assert coins_per_day(network, 1000.0)[i] == pytest.approx(by_difficulty, rel=1e-6)


def test_hourly_deposits_add_up_to_the_day(network) -> None:  # type: ignore[no-untyped-def]
    stamps = np.arange(
        np.datetime64("2024-03-01T00:00"), np.datetime64("2024-03-03T00:00"), np.timedelta64(1, "h")
    ).astype("datetime64[s]")
    dep = mined_deposits(stamps, network, 1000.0)
    # bar t holds what was mined in the hour before it: bars 01:00 .. next 00:00 carry March 1st
    assert dep[1:25].sum() == pytest.approx(
        coins_per_day(network, 1000.0)[_day(network, "2024-03-01")]
    )
    assert dep[0] == pytest.approx(coins_per_day(network, 1000.0)[_day(network, "2024-02-29")] / 24)


def test_outside_the_history_is_refused(network) -> None:  # type: ignore[no-untyped-def]
    stamps = np.array(["2025-06-01T00:00", "2025-06-01T01:00"], dtype="datetime64[s]")
    with pytest.raises(InflowError, match="no network data for 2025-05-31"):
        mined_deposits(stamps, network, 1000.0)
    with pytest.raises(InflowError, match="hashrate -1"):
        coins_per_day(network, -1.0)


def test_deposits_file(tmp_path: Path) -> None:
    stamps = np.array(
        ["2024-01-01T00:00", "2024-01-01T01:00", "2024-01-01T02:00"], dtype="datetime64[s]"
    )
    path = tmp_path / "deposits.csv"
    path.write_text(
        "timestamp,coins\n2024-01-01T00:00:00Z,0.5\n2024-01-01T00:30:00Z,0.25\n"
        "2024-01-01T01:00:00Z,0.125\n"
    )
    np.testing.assert_allclose(deposits_from_file(path, stamps), [0.5, 0.375, 0.0])
    path.write_text("timestamp,coins\n2024-01-01T05:00:00Z,0.5\n")
    with pytest.raises(InflowError, match="row 0: deposit at 2024-01-01T05:00:00 lies outside"):
        deposits_from_file(path, stamps)
    path.write_text("timestamp,coins\n2024-01-01T01:00:00Z,abc\n")
    with pytest.raises(InflowError, match="row 0: coins='abc'"):
        deposits_from_file(path, stamps)
    path.write_text("time,amount\n")
    with pytest.raises(InflowError, match="missing column"):
        deposits_from_file(path, stamps)
