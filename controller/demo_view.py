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
    return Group(Panel(prices, title="Prices"), Panel(plan, title="Plan"), *extra, fleet)


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
                f"curtail/resume={state.curtail_actions}/{state.resume_actions}",
                flush=True,
            )

    def close(self) -> None:
        """Leave the last frame on screen."""
        if self.live is not None:
            self.live.stop()
