"""One treasury tick in its own process, for the crash tests (`python -m tests.treasury.crash_runner`).

argv: workdir bars.json first last: one tick per bar index first..last, each marked done in
workdir so a restarted process resumes at the tick that was killed. The ledger is a SQLite file and the paper venue a JSON file
in workdir, both surviving the process; FARMCTL_CRASH_AT kills the process at a named step.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from treasury.executor import Executor, ExecutorSettings
from treasury.ledger import Ledger
from treasury.risk import KillSwitch, RiskLimits
from treasury.strategy import StrategyParams
from treasury.tick import TickSettings, run_tick
from treasury.venues.base import MarketRules
from treasury.venues.paper import PaperVenue, PriceBar

SYMBOL = "BTC/USD"
RULES = MarketRules(
    SYMBOL, Decimal("0.00000001"), Decimal("1"), Decimal("0.0001"), Decimal("5"),
    Decimal("0.0016"), Decimal("0.0026"),
)  # fmt: skip


def main() -> int:
    workdir, bars_file = Path(sys.argv[1]), Path(sys.argv[2])
    first, last = int(sys.argv[3]), int(sys.argv[4])
    logging.basicConfig(level=logging.WARNING)
    bars = json.loads(bars_file.read_text())
    engine = sa.create_engine(f"sqlite:///{workdir / 'ledger.db'}")
    ledger = Ledger(engine)
    ledger.create_tables()
    venue = PaperVenue(
        name="paper",
        rules=RULES,
        state_path=workdir / "paper.json",
        initial_balances={"BTC": Decimal("1"), "USD": Decimal("0")},
        volume_share=Decimal("0.001"),
    )
    executor = Executor(ledger, {"paper": venue}, ExecutorSettings(not_found_grace_s=0))
    for index in range(first, last + 1):
        if (workdir / f"tick-{index}.done").exists():
            continue
        tick(workdir, bars, index, ledger, executor, venue)
        (workdir / f"tick-{index}.done").write_text("1")
    return 0


def tick(
    workdir: Path,
    bars: list[dict[str, object]],
    index: int,
    ledger: Ledger,
    executor: Executor,
    venue: PaperVenue,
) -> None:
    row = bars[index]
    bar = PriceBar(
        datetime.fromisoformat(str(row["timestamp"])),
        *(Decimal(str(row[k])) for k in ("open", "high", "low", "close", "volume")),
    )
    applied = workdir / f"bar-{index}.done"
    if not applied.exists():
        # Feeding a bar is the market moving, not our process: done once per bar.
        venue.on_bar(bar)
        applied.write_text("1")
    closes = [float(str(b["close"])) for b in bars[: index + 1]]
    settings = TickSettings(
        symbol=SYMBOL,
        params=StrategyParams(
            band_method="fixed",
            fixed_pmin=min(closes) * 0.5,
            fixed_pmax=max(closes),
            momentum_window=1,
            momentum_strength=0.0,
            min_trade_fraction=0.0,
        ),
        limits=RiskLimits(Decimal("0.2"), Decimal("5"), Decimal("0.05")),
        reference_window=24,
        price_offset_fraction=Decimal("0.001"),
    )
    run_tick(ledger, executor, [venue], closes, settings, KillSwitch(ledger), now=bar.timestamp)


if __name__ == "__main__":
    sys.exit(main())
