"""Plan plots (PNG): the hashing plan drawn over the prices.

Uses matplotlib's Agg backend so it runs on headless gateways.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting.plan_types import HashingPlan, PlanError


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shade(ax: Any, index: pd.DatetimeIndex, off: np.ndarray, color: str, label: str) -> None:
    labelled = False
    start = None
    for t, is_off in enumerate(np.r_[off, False]):
        if is_off and start is None:
            start = t
        elif not is_off and start is not None:
            end = index[t] if t < len(index) else index[-1] + pd.Timedelta(hours=1)
            ax.axvspan(
                index[start], end, color=color, alpha=0.25, label=None if labelled else label
            )
            labelled = True
            start = None


def busiest_week(schedule: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The 7-day window where perfect foresight curtails the most hours (the interesting one)."""
    off = (~schedule["perfect_on"] & schedule["valid"]).astype(float)
    if len(off) <= 168:
        return pd.Timestamp(schedule.index[0]), pd.Timestamp(schedule.index[-1])
    rolling = off.rolling(168).sum()
    end = pd.Timestamp(rolling.index[int(np.nanargmax(rolling.to_numpy()))])
    return end - pd.Timedelta(hours=167), end


def plot_backtest_window(
    schedule: pd.DataFrame,
    path: Path,
    title: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    timezone: str = "UTC",
) -> Path:
    """Real-time and day-ahead prices, the forecast band, break-even, and the hours our plan and
    perfect foresight curtail, for one window of a :func:`plan_schedule` table."""
    if start is None or end is None:
        start, end = busiest_week(schedule)
    part = schedule.loc[start:end]
    if part.empty:
        raise PlanError(f"no hours to plot between {start} and {end}")
    plt = _pyplot()
    index = pd.DatetimeIndex(part.index).tz_convert(timezone).tz_localize(None)
    be = float(schedule.attrs["break_even"])
    fig, (ax, strip) = plt.subplots(
        2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    ax.fill_between(index, part["p10"], part["p90"], step="post", color="tab:blue", alpha=0.15,
                    label="forecast p10-p90")  # fmt: skip
    ax.step(index, part["p50"], where="post", color="tab:blue", lw=1, label="forecast p50")
    ax.step(index, part["da"], where="post", color="tab:gray", lw=1, label="day-ahead")
    ax.step(index, part["rt"], where="post", color="black", lw=1.4, label="real-time")
    ax.axhline(be, color="tab:red", ls="--", lw=1, label=f"break-even {be:.1f}")
    _shade(ax, index, ~part["plan_on"].to_numpy(dtype=bool), "tab:orange", "our plan curtails")
    ax.set_ylabel("USD/MWh")
    top = float(np.nanpercentile(part[["rt", "p90"]].to_numpy(dtype=float), 99.5))
    ax.set_ylim(min(0.0, float(np.nanmin(part["rt"]))) - 5, max(be * 1.5, top * 1.05))
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    strip.step(index, part["plan_on"].astype(float) + 0.02, where="post", label="our plan")
    strip.step(index, part["perfect_on"].astype(float) - 0.02, where="post",
               label="perfect foresight")  # fmt: skip
    strip.set_yticks([0, 1], ["off", "hash"])
    strip.legend(loc="lower left", fontsize=8, ncol=2)
    strip.set_xlabel(f"local time ({timezone})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_hashing_plan(plan: HashingPlan, path: Path, timezone: str = "UTC") -> Path:
    """A live plan: forecast band and break-even per group above, hashing MW per group below."""
    if not plan.hours:
        raise PlanError("the plan has no hours to plot")
    plt = _pyplot()
    frame = pd.DataFrame(
        [
            {
                "start": h.start,
                "group": h.group,
                "mw": h.power_mw if h.hashing else 0.0,
                "p10": h.price_p10,
                "p50": h.price_p50,
                "p90": h.price_p90,
                "be": h.break_even,
            }
            for h in plan.hours
        ]
    )
    frame["start"] = pd.to_datetime(frame["start"], utc=True).dt.tz_convert(timezone)
    frame["start"] = frame["start"].dt.tz_localize(None)
    prices = frame.groupby("start")[["p10", "p50", "p90"]].first()
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    ax.fill_between(prices.index, prices["p10"], prices["p90"], step="post", alpha=0.2,
                    label="forecast p10-p90")  # fmt: skip
    ax.step(prices.index, prices["p50"], where="post", label="forecast p50")
    for group, rows in frame.groupby("group"):
        ax.axhline(float(rows["be"].iloc[0]), ls="--", lw=1, label=f"break-even {group}")
    ax.set_ylabel("price per MWh")
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    mw = frame.pivot_table(index="start", columns="group", values="mw", aggfunc="sum")
    bottom = np.zeros(len(mw))
    width = 1 / 24 * 0.9
    for group in mw.columns:
        bars.bar(mw.index, mw[group], width=width, bottom=bottom, align="edge", label=str(group))
        bottom += mw[group].to_numpy()
    bars.set_ylabel("hashing MW")
    bars.legend(loc="lower left", fontsize=8, ncol=4)
    bars.set_xlabel(f"local time ({timezone})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
