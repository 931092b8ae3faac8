"""Risk limits: order size, daily maximum, price band on the real 12 March 2020 crash, kill switch, live mode."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from treasury.ledger import Ledger
from treasury.price_data import load_bars
from treasury.risk import (
    KillSwitch,
    LiveModeRefused,
    RiskLimits,
    RiskRefused,
    allowed_amount,
    check_live_mode,
    check_order,
    reference_price,
)
from treasury.venues.paper import PaperVenue

LIMITS = RiskLimits(Decimal("0.5"), Decimal("2"), Decimal("0.05"))


def test_max_order_size() -> None:
    with pytest.raises(RiskRefused, match=r"exceeds the maximum order size 0\.5") as info:
        check_order(
            "sell", Decimal("0.51"), Decimal("100"), Decimal("100"), LIMITS, Decimal(0), False
        )
    assert info.value.code == "max_order"
    check_order("sell", Decimal("0.5"), Decimal("100"), Decimal("100"), LIMITS, Decimal(0), False)


def test_max_sold_per_day() -> None:
    with pytest.raises(RiskRefused, match=r"on top of 1\.6 today") as info:
        check_order(
            "sell", Decimal("0.5"), Decimal("100"), Decimal("100"), LIMITS, Decimal("1.6"), False
        )
    assert info.value.code == "max_per_day"
    assert allowed_amount(Decimal("3"), LIMITS, Decimal("1.6")) == Decimal("0.4")
    assert allowed_amount(Decimal("3"), LIMITS, Decimal("2.5")) == Decimal(0)


def test_price_band_refuses_selling_into_the_march_2020_crash(data_dir: Path) -> None:
    bars = load_bars(data_dir / "btc" / "btcusd_bitstamp_1h.csv.gz").between(
        "2020-03-11T10:00:00", "2020-03-12T11:00:00"
    )
    before = [Decimal(str(c)) for c in bars.close[:24]]  # up to 09:00 on 12 March
    reference = reference_price(before)
    assert Decimal("7600") < reference < Decimal("8000")
    crash_low = Decimal(str(bars.low[24]))  # 10:00 bar: the first leg of the crash
    assert crash_low == Decimal("5965.24")
    band10 = RiskLimits(Decimal("0.5"), Decimal("2"), Decimal("0.10"))
    with pytest.raises(RiskRefused, match=r"23\.41% below the reference 7788\.12") as info:
        check_order("sell", Decimal("0.1"), crash_low, reference, band10, Decimal(0), False)
    assert info.value.code == "price_band"
    # The last close before the crash (7342.49, 5.72 % under the median) passes a 10 % band
    # and is refused by a 5 % one: the slide had already begun.
    check_order("sell", Decimal("0.1"), before[-1], reference, band10, Decimal(0), False)
    with pytest.raises(RiskRefused, match=r"5\.72% below"):
        check_order("sell", Decimal("0.1"), before[-1], reference, LIMITS, Decimal(0), False)


def test_one_crashed_print_does_not_move_the_reference() -> None:
    prices = [Decimal(p) for p in ("100", "101", "99", "100", "10")]
    assert reference_price(prices) == Decimal("100")


def test_kill_switch_file_and_flag(tmp_path: Path) -> None:
    ledger = Ledger(sa.create_engine(f"sqlite:///{tmp_path / 'l.db'}"))
    ledger.create_tables()
    switch = KillSwitch(ledger, tmp_path / "KILL")
    assert not switch.is_on()
    switch.set(True)
    assert switch.is_on() and (tmp_path / "KILL").exists()
    with pytest.raises(RiskRefused, match="kill switch is on"):
        check_order(
            "sell", Decimal("0.1"), Decimal("1"), Decimal("1"), LIMITS, Decimal(0), switch.is_on()
        )
    switch.set(False)
    assert not switch.is_on()
    (tmp_path / "KILL").write_text("operator")  # the file alone is enough
    assert KillSwitch(ledger, tmp_path / "KILL").is_on()


class WithdrawingVenue(PaperVenue):
    def key_can_withdraw(self) -> bool | None:
        return True


class SilentVenue(PaperVenue):
    def key_can_withdraw(self) -> bool | None:
        return None


def test_live_mode_needs_both_switches_and_a_trade_only_key() -> None:
    paper = PaperVenue()
    with pytest.raises(LiveModeRefused, match="live=true and dry_run=false"):
        check_live_mode(False, False, [paper])
    with pytest.raises(LiveModeRefused, match="live=true and dry_run=false"):
        check_live_mode(True, True, [paper])
    assert check_live_mode(True, False, [paper]) == []
    with pytest.raises(LiveModeRefused, match="withdrawal rights"):
        check_live_mode(True, False, [paper, WithdrawingVenue(name="kraken")])
    assert check_live_mode(True, False, [SilentVenue(name="bitstamp")]) == ["bitstamp"]


def test_limits_validate() -> None:
    with pytest.raises(ValueError, match="price_band_fraction"):
        RiskLimits(Decimal("1"), Decimal("1"), Decimal("1.5"))
