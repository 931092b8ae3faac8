"""The demo's terminal view: fleet, prices, plan and treasury, refreshed live (rich)."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from controller.clock import hour_floor
from controller.demo import DemoState
from controller.gateway import Gateway
from controller.treasury_service import TreasuryView

STATE_STYLE = {
    "hashing": "green",
    "curtailed": "yellow",
    "idle": "cyan",
    "offline": "red",
    "error": "red",
}


def _price_at(state: DemoState, moment: datetime) -> tuple[float | None, float | None]:
    frame = state.feed.frame
    hour = pd.Timestamp(hour_floor(moment))
    if hour not in frame.index:
        return None, None
    da, rt = float(frame["da"].loc[hour]), float(frame["rt"].loc[hour])
    return (None if math.isnan(da) else da), (None if math.isnan(rt) else rt)


def render(gateway: Gateway, state: DemoState) -> Group:
    """One frame of the view."""
    now = gateway.clock.now()
    statuses = gateway.state.statuses
    fleet = Table(title="Fleet", expand=True)
    for column in ("rig", "family", "model", "state", "TH/s", "W"):
        fleet.add_column(column, justify="right" if column in ("TH/s", "W") else "left")
    total_ths = total_w = 0.0
    for name, status in sorted(statuses.items()):
        style = STATE_STYLE.get(status.state, "white")
        ths, watts = status.hashrate_ths or 0.0, status.power_w or 0.0
        total_ths += ths
        total_w += watts
        fleet.add_row(
            name,
            status.family or "",
            status.model or "",
            f"[{style}]{status.state}[/]",
            f"{ths:.1f}",
            f"{watts:.0f}",
        )
    fleet.add_row("[b]total[/]", "", "", "", f"[b]{total_ths:.1f}[/]", f"[b]{total_w:.0f}[/]")
    da, rt = _price_at(state, now)
    prices = Table.grid(padding=(0, 2))
    prices.add_row("farm time (UTC)", now.strftime("%Y-%m-%d %H:%M"))
    prices.add_row("prices", state.source)
    prices.add_row("day-ahead now", "-" if da is None else f"{da:.2f} USD/MWh")
    prices.add_row(
        "real-time now", "-" if rt is None else f"{rt:.2f} USD/MWh (known after the hour)"
    )
    prices.add_row("hashprice", f"{state.hashprice:.4f} USD/TH/day")
    plan = Table.grid(padding=(0, 2))
    plan.add_row("plans made", str(state.plans))
    plan.add_row("rigs the plan wants hashing", str(state.hashing_now))
    plan.add_row("curtail / resume actions", f"{state.curtail_actions} / {state.resume_actions}")
    if state.plan is not None:
        for group in state.plan.groups:
            hours = [h for h in state.plan.hours if h.group == group.name]
            off = sum(1 for h in hours if not h.hashing)
            plan.add_row(
                f"group {group.name}",
                f"{len(group.rigs)} rigs, off {off}/{len(hours)} planned hours",
            )
    extra = (
        [Panel(t, title=title) for title, t in state.panels.items()]
        if hasattr(state, "panels")
        else []
    )
    if state.treasury is not None:  # the treasury panel (controller/treasury_service.py)
        extra.append(Panel(treasury_table(state.treasury.view), title="Treasury (paper venue)"))
    return Group(Panel(prices, title="Prices"), Panel(plan, title="Plan"), *extra, fleet)


def treasury_table(view: TreasuryView) -> Table:
    """BTC and USD held, coins mined and sold, average sale price, the last decision."""
    grid = Table.grid(padding=(0, 2))
    grid.add_row("BTC held", f"{view.coins:.8f}")
    grid.add_row("USD held", f"{view.fiat:.2f}")
    grid.add_row("coins mined", f"{view.mined:.8f}")
    grid.add_row("coins sold", f"{view.sold:.8f} in {view.orders} order(s)")
    avg = view.average_price
    grid.add_row("average sale price", "-" if avg is None else f"{avg:.2f}")
    grid.add_row("BTC price (last hour)", "-" if view.price is None else f"{view.price:.2f}")
    grid.add_row("last decision", view.last_decision or "-")
    if view.last_error or view.last_skip:
        grid.add_row(
            "note", f"[red]{view.last_error}[/]" if view.last_error else str(view.last_skip)
        )
    return grid


class LiveView:
    """Refreshes the terminal while the demo runs; prints one line per farm hour when not a TTY."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live: Live | None = None
        self._last_hour: datetime | None = None

    async def __call__(self, gateway: Gateway, state: DemoState) -> None:
        """Update the view (called by the demo driver a few times per real second)."""
        if self.console.is_terminal:
            if self.live is None:
                self.live = Live(render(gateway, state), console=self.console, refresh_per_second=4)
                self.live.start()
            else:
                self.live.update(render(gateway, state))
            return
        hour = hour_floor(gateway.clock.now())
        if hour != self._last_hour:
            self._last_hour = hour
            states: dict[str, int] = {}
            for status in gateway.state.statuses.values():
                states[status.state] = states.get(status.state, 0) + 1
            da, rt = _price_at(state, hour)
            print(
                f"{hour:%Y-%m-%d %H:00} UTC  da={da if da is None else round(da, 1)} "
                f"rt={rt if rt is None else round(rt, 1)}  rigs={states}  plans={state.plans}  "
                f"curtail/resume={state.curtail_actions}/{state.resume_actions}"
                + (  # treasury (controller/treasury_service.py)
                    f"  btc={state.treasury.view.coins:.6f} sold={state.treasury.view.sold:.6f}"
                    if state.treasury is not None
                    else ""
                ),
                flush=True,
            )

    def close(self) -> None:
        """Leave the last frame on screen."""
        if self.live is not None:
            self.live.stop()
