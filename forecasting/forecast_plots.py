"""PNG of a day-ahead forecast against the actual prices, with the p10-p90 band."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_forecast(
    frame: pd.DataFrame,
    path: Path,
    title: str = "",
    model: str = "Combination",
    currency: str = "EUR",
) -> Path:
    """Draw ``actual``, the ``model`` column and the ``p10``..``p90`` band of ``frame`` to a PNG.

    ``frame`` is indexed by hour (as :meth:`RollingResult.to_frame` gives it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for col in ("actual", model, "p10", "p90"):
        if col not in frame.columns:
            raise ValueError(f"plot needs column {col!r}; got {list(frame.columns)}")
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=110)
    x = frame.index
    ax.fill_between(x, frame["p10"], frame["p90"], color="tab:blue", alpha=0.2, label="p10-p90")
    ax.plot(x, frame["actual"], color="black", linewidth=1.2, label="actual")
    ax.plot(x, frame[model], color="tab:blue", linewidth=1.2, label=f"forecast ({model})")
    ax.set_ylabel(f"price ({currency}/MWh)")
    ax.set_title(title or "Day-ahead forecast")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
