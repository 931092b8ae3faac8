"""PNG of a backtest: the price with buys and sells, and the fiat weight over time (matplotlib Agg)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from treasury.backtest import BacktestResult
from treasury.price_data import Bars

logger = logging.getLogger(__name__)

MAX_POINTS = 20_000  # lines are thinned beyond this; every trade marker is still drawn


def plot_backtest(bars: Bars, result: BacktestResult, path: str | Path, title: str = "") -> Path:
    """Write the two-panel chart for `result` (run over `bars`) to `path`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = bars.slice(result.start, result.end)
    step = max(len(window) // MAX_POINTS, 1)
    when = window.timestamp[::step].astype("datetime64[ms]").astype(object)
    fig, (ax_price, ax_weight) = plt.subplots(
        2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    try:
        ax_price.plot(when, window.close[::step], color="0.3", linewidth=0.8, label="close")
        trade_when = bars.timestamp[result.trade_bar].astype("datetime64[ms]").astype(object)
        sells = result.trade_coins > 0.0
        buys = ~sells
        if sells.any():
            ax_price.scatter(
                np.asarray(trade_when)[sells], result.trade_price[sells],
                marker="v", color="tab:red", s=14, label=f"sell ({int(sells.sum())})", zorder=3,
            )  # fmt: skip
        if buys.any():
            ax_price.scatter(
                np.asarray(trade_when)[buys], result.trade_price[buys],
                marker="^", color="tab:green", s=14, label=f"buy ({int(buys.sum())})", zorder=3,
            )  # fmt: skip
        ax_price.set_ylabel("price")
        ax_price.legend(loc="upper left")
        ax_price.set_title(title or "backtest")
        ax_weight.plot(
            when, result.fiat_weight[::step], color="tab:blue", linewidth=0.8, label="fiat weight"
        )
        ax_weight.plot(
            when,
            result.target_weight[::step],
            color="tab:orange",
            linewidth=0.8,
            alpha=0.7,
            label="target weight",
        )
        ax_weight.set_ylim(-0.02, 1.02)
        ax_weight.set_ylabel("fiat weight")
        ax_weight.legend(loc="upper left")
        fig.autofmt_xdate()
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    logger.info("backtest plot written path=%s trades=%d", out, result.n_trades)
    return out
