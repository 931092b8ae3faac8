"""The daemon's treasury service on real BTC bars and the real network history, by hand-set farm
time: mined coins per hour (once), a deposit repaired after a kill, report delivery retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from controller.clock import Clock
from controller.config import FarmConfig, load_config
from controller.gateway import Gateway
from controller.mqtt.tables import MqttOutbox
from controller.treasury_service import TreasuryService, attach_treasury, detach_treasury
from miners.status import RigStatus
from tests.e2e.support import REPO, webhook_catcher
from treasury.ledger import Ledger

DAY = datetime(2022, 6, 15, tzinfo=UTC)  # inside the Bitstamp hourly file and the network file


class HandClock(Clock):
    """Farm time set by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@pytest.fixture
async def service(data_dir: Path, tmp_path: Path) -> AsyncIterator[TreasuryService]:
    raw = load_config(REPO / "config" / "farm.example.toml").model_dump(
        mode="json", exclude_none=True
    )
    raw["rigs"] = []
    raw["farm"] |= {"data_dir": str(tmp_path)}
    raw["database"] = {"url": f"sqlite:///{tmp_path / 'farm.db'}"}
    raw["reports"]["webhook"] = {"enabled": True, "url": {"env": "FARMCTL_E2E_HOOK"}}
    gateway = Gateway(
        FarmConfig.model_validate(raw),
        base_dir=tmp_path,
        clock=HandClock(DAY + timedelta(hours=10)),
    )
    await gateway.start()
    treasury = attach_treasury(gateway, data_dir=data_dir)
    assert treasury is not None
    yield treasury
    detach_treasury()
    await gateway.close()


def _expected_coins(data_dir: Path, ths: float) -> Decimal:
    """The hour's coins by hand from the network file's row for DAY."""
    frame = pd.read_csv(data_dir / "bitcoin-network" / "btc_network_daily_2009_2025.csv.gz")
    row = frame[frame["date"] == DAY.date().isoformat()].iloc[0]
    fees = row["fees_btc_day_bccom"] if pd.notna(row["fees_btc_day_bccom"]) else 0.0
    per_day = ths * 1e12 / row["hashrate_hs"] * (row["subsidy_btc_day"] + fees)
    return Decimal(f"{per_day / 24:.8f}")


def _btc_at_venue(service: TreasuryService) -> Decimal:
    state = json.loads((service.data_dir / "paper-paper.json").read_text())
    return Decimal(state["balances"].get("BTC", "0"))


def _tick(service: TreasuryService, at: datetime) -> None:
    service.gateway.clock.at = at  # type: ignore[attr-defined]
    service.tick(at)


async def test_mined_coins_credited_once_per_hour_from_the_polled_hashrate(
    service: TreasuryService, data_dir: Path
) -> None:
    service.gateway.state.statuses = {
        "r1": RigStatus(state="hashing", hashrate_ths=100.0),
        "r2": RigStatus(state="hashing", hashrate_ths=50.0),
        "r3": RigStatus(state="curtailed", hashrate_ths=0.0),
    }
    _tick(service, DAY + timedelta(hours=10, minutes=5))
    service.gateway.state.statuses["r2"] = RigStatus(state="hashing", hashrate_ths=90.0)
    _tick(service, DAY + timedelta(hours=10, minutes=35))
    _tick(service, DAY + timedelta(hours=11, minutes=2))
    _tick(service, DAY + timedelta(hours=11, minutes=30))
    deposits = Ledger(service.gateway.engine).deposits_between(DAY, DAY + timedelta(days=1))
    assert [d.reference for d in deposits] == ["mined:west:20220615T10"]
    # Mean of the hour's two samples: (150 + 190) / 2 TH/s.
    assert deposits[0].amount == _expected_coins(data_dir, 170.0)
    assert deposits[0].received_at == DAY + timedelta(hours=11)
    assert _btc_at_venue(service) == deposits[0].amount
    assert service.view.mined == deposits[0].amount


async def test_deposit_recorded_but_not_credited_is_repaired_on_the_next_tick(
    service: TreasuryService,
) -> None:
    ledger = Ledger(service.gateway.engine)
    # A kill between the ledger write and the paper venue's credit leaves exactly this.
    assert ledger.record_deposit(
        "paper", "mined:west:20220615T09", "BTC", Decimal("0.01234567"), DAY, "estimate"
    )
    assert _btc_at_venue(service) == 0
    _tick(service, DAY + timedelta(hours=10, minutes=5))
    assert _btc_at_venue(service) == Decimal("0.01234567")
    _tick(service, DAY + timedelta(hours=10, minutes=10))
    assert _btc_at_venue(service) == Decimal("0.01234567")


async def test_failed_report_channel_is_retried_without_resending_the_others(
    service: TreasuryService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FARMCTL_E2E_HOOK", "http://127.0.0.1:9/closed")
    assert service.daily_reports(DAY + timedelta(hours=10)) == []  # the first day starts here
    assert not service.report_due(DAY + timedelta(hours=20))
    next_day = DAY + timedelta(days=1, hours=0, minutes=5)
    assert service.report_due(next_day)
    assert service.daily_reports(next_day) == []  # webhook refused: still pending
    assert set(service.undelivered) == {"webhook"}
    assert service.reported_through() is None
    with webhook_catcher() as hook:
        monkeypatch.setenv("FARMCTL_E2E_HOOK", hook.url)
        assert service.daily_reports(next_day) == ["2022-06-15"]
        titles = [b["title"] for b in hook.bodies]
    assert titles == ["Sale report 2022-06-15"]
    assert service.reported_through() == DAY.date()
    assert not service.report_due(next_day)
    with service.gateway.sessions() as session:
        outbox = session.scalar(
            select(func.count())
            .select_from(MqttOutbox)
            .where(MqttOutbox.msg_id == "sale-report-2022-06-15")
        )
    assert outbox == 1  # MQTT had it from the first try and was not sent it again
    report = json.loads((service.reports_dir / "2022-06-15.json").read_text())
    assert report["period"]["label"] == "2022-06-15"
