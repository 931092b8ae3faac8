"""Mining economics: block subsidy by height, hashprice, revenue per MWh and break-even power price.

Formulas (docs/forecasting.md, "Economics"):

* subsidy(height) = 50 BTC >> (height // 210,000), in whole satoshis (0 after 64 halvings);
* network hashrate (H/s) = difficulty x 2^32 / 600 (expected blocks every 600 s);
* hashprice (USD per TH/s per day) = (subsidy + fees per block) x blocks per day x BTC price
  / (network hashrate / 1e12), with 144 blocks per day at the target spacing;
* revenue per MWh of a rig at e J/TH = hashprice x 1e6 / (24 x e): one TH/s at e W uses
  24 x e Wh = 24 x e / 1e6 MWh per day. Hashing pays while the power price is below this,
  so it is also the break-even power price (before pool fees, which scale it by 1 - fee).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

SATOSHI_PER_BTC = 100_000_000
HALVING_INTERVAL = 210_000
INITIAL_SUBSIDY_SAT = 50 * SATOSHI_PER_BTC
TARGET_BLOCK_SECONDS = 600
BLOCKS_PER_DAY = 86_400 / TARGET_BLOCK_SECONDS  # 144
HASHES_PER_DIFFICULTY = 2**32


class EconomicsError(ValueError):
    """An economics input is out of its valid range (negative height, zero difficulty, ...)."""


def subsidy_sat(height: int) -> int:
    """Block subsidy in satoshis at a block height: halves every 210,000 blocks, 0 after 64."""
    if height < 0:
        raise EconomicsError(f"block height must be >= 0, got {height}")
    halvings = height // HALVING_INTERVAL
    if halvings >= 64:
        return 0
    return INITIAL_SUBSIDY_SAT >> halvings


def subsidy_btc(height: int) -> float:
    """Block subsidy in BTC at a block height (see :func:`subsidy_sat`)."""
    return subsidy_sat(height) / SATOSHI_PER_BTC


def network_hashrate_hs(difficulty: float) -> float:
    """Expected network hashrate in H/s implied by a difficulty (difficulty x 2^32 / 600)."""
    if not difficulty > 0:
        raise EconomicsError(f"difficulty must be > 0, got {difficulty}")
    return difficulty * HASHES_PER_DIFFICULTY / TARGET_BLOCK_SECONDS


def hashprice_from_hashrate(
    hashrate_hs: float,
    subsidy_btc_per_block: float,
    price_usd: float,
    fees_btc_per_block: float = 0.0,
    blocks_per_day: float = BLOCKS_PER_DAY,
) -> float:
    """Hashprice in USD per TH/s per day from the network hashrate (H/s)."""
    if not hashrate_hs > 0:
        raise EconomicsError(f"network hashrate must be > 0 H/s, got {hashrate_hs}")
    if price_usd < 0 or subsidy_btc_per_block < 0 or fees_btc_per_block < 0:
        raise EconomicsError(
            f"price, subsidy and fees must be >= 0 (price={price_usd}, "
            f"subsidy={subsidy_btc_per_block}, fees={fees_btc_per_block})"
        )
    btc_per_day = (subsidy_btc_per_block + fees_btc_per_block) * blocks_per_day
    return btc_per_day * price_usd / (hashrate_hs / 1e12)


def hashprice_from_difficulty(
    difficulty: float,
    subsidy_btc_per_block: float,
    price_usd: float,
    fees_btc_per_block: float = 0.0,
) -> float:
    """Hashprice in USD per TH/s per day from difficulty, subsidy, fees per block and BTC price.

    Uses the expected 144 blocks a day and the hashrate the difficulty implies, so the block
    count cancels: (subsidy + fees) x price x 86400 x 1e12 / (difficulty x 2^32).
    """
    return hashprice_from_hashrate(
        network_hashrate_hs(difficulty), subsidy_btc_per_block, price_usd, fees_btc_per_block
    )


def revenue_per_mwh(
    hashprice_usd_per_th_day: float, j_per_th: float, pool_fee: float = 0.0
) -> float:
    """USD earned per MWh a rig of ``j_per_th`` consumes at a hashprice (after the pool fee)."""
    if not j_per_th > 0:
        raise EconomicsError(f"efficiency must be > 0 J/TH, got {j_per_th}")
    if not 0.0 <= pool_fee < 1.0:
        raise EconomicsError(f"pool fee must be in [0, 1), got {pool_fee}")
    return hashprice_usd_per_th_day * (1.0 - pool_fee) * 1e6 / (24.0 * j_per_th)


def break_even_price(
    hashprice_usd_per_th_day: float, j_per_th: float, pool_fee: float = 0.0
) -> float:
    """Power price (USD/MWh) above which hashing loses money: equal to revenue per MWh."""
    return revenue_per_mwh(hashprice_usd_per_th_day, j_per_th, pool_fee)


@dataclass(frozen=True)
class ModelEconomics:
    """One rig model's economics at a hashprice."""

    model: str
    hashrate_ths: float | None
    power_w: float | None
    j_per_th: float
    revenue_usd_per_day: float | None
    revenue_usd_per_mwh: float
    break_even_usd_per_mwh: float


def model_economics(
    model: str,
    j_per_th: float,
    hashprice_usd_per_th_day: float,
    hashrate_ths: float | None = None,
    power_w: float | None = None,
    pool_fee: float = 0.0,
) -> ModelEconomics:
    """Revenue per day and per MWh and the break-even power price of one rig model."""
    per_mwh = revenue_per_mwh(hashprice_usd_per_th_day, j_per_th, pool_fee)
    per_day = None
    if hashrate_ths is not None:
        per_day = hashrate_ths * hashprice_usd_per_th_day * (1.0 - pool_fee)
    return ModelEconomics(
        model=model,
        hashrate_ths=hashrate_ths,
        power_w=power_w,
        j_per_th=j_per_th,
        revenue_usd_per_day=per_day,
        revenue_usd_per_mwh=per_mwh,
        break_even_usd_per_mwh=per_mwh,
    )


@dataclass(frozen=True)
class NetworkDay:
    """One day of network data as the shared bitcoin-network file gives it."""

    day: date
    difficulty: float
    subsidy_btc_per_block: float
    blocks: float
    price_usd: float
    fees_btc_per_day: float | None
    hashprice_subsidy_published: float | None
    hashprice_total_published: float | None

    @property
    def fees_btc_per_block(self) -> float | None:
        """Average fees per block that day, where the file has fees."""
        if self.fees_btc_per_day is None or not self.blocks > 0:
            return None
        return self.fees_btc_per_day / self.blocks

    def hashprice(self, include_fees: bool = True) -> float:
        """Our hashprice for this day from difficulty, subsidy, fees and price."""
        fees = self.fees_btc_per_block if include_fees else 0.0
        if include_fees and fees is None:
            raise EconomicsError(f"{self.day}: the network file has no fees for this day")
        return hashprice_from_difficulty(
            self.difficulty, self.subsidy_btc_per_block, self.price_usd, fees or 0.0
        )


def network_file(data_dir: Path) -> Path:
    """Path of the shared daily network file under the shared data dir."""
    return data_dir / "bitcoin-network" / "btc_network_daily_2009_2025.csv.gz"


def _opt(value: object) -> float | None:
    f = float(value)  # type: ignore[arg-type]
    return None if math.isnan(f) else f


def load_network_days(path: Path) -> dict[date, NetworkDay]:
    """Read the shared daily network file (see its SOURCES.md) into :class:`NetworkDay` rows.

    Days without a price or an implied difficulty are skipped (they cannot give a hashprice).
    """
    import pandas as pd

    frame = pd.read_csv(path)
    need = {"date", "difficulty_implied", "subsidy_per_block_btc", "blocks_implied", "price_usd"}
    missing = need - set(frame.columns)
    if missing:
        raise EconomicsError(f"{path}: missing columns {sorted(missing)}")
    out: dict[date, NetworkDay] = {}
    for row in frame.itertuples(index=False):
        price = _opt(row.price_usd)
        diff = _opt(row.difficulty_implied)
        if price is None or diff is None or diff <= 0:
            continue
        day = date.fromisoformat(str(row.date))
        out[day] = NetworkDay(
            day=day,
            difficulty=diff,
            subsidy_btc_per_block=_opt(row.subsidy_per_block_btc) or 0.0,
            blocks=_opt(row.blocks_implied) or 0.0,
            price_usd=price,
            fees_btc_per_day=_opt(row.fees_btc_day_bccom),
            hashprice_subsidy_published=_opt(row.hashprice_subsidy_usd_per_th_day),
            hashprice_total_published=_opt(row.hashprice_total_usd_per_th_day),
        )
    return out


def network_day(days: dict[date, NetworkDay], when: date | None = None) -> NetworkDay:
    """The row for ``when``, or the latest day in the file when ``when`` is None."""
    if not days:
        raise EconomicsError("the network file has no usable days")
    if when is None:
        return days[max(days)]
    if when not in days:
        first, last = min(days), max(days)
        raise EconomicsError(f"no network data for {when} (file covers {first} .. {last})")
    return days[when]
