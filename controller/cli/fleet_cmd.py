"""farmctl miners poll|scan|status and farmctl sim: the fleet side of the `miners` group."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from controller.cli.miners_cmd import miners_app

if TYPE_CHECKING:
    from miners.status import RigStatus


# --- fleet ---
def _default_state_file() -> Path:
    """Where `miners poll` records the last poll: $FARMCTL_STATE_DIR or ~/.local/state/farmctl."""
    base = os.environ.get("FARMCTL_STATE_DIR") or os.path.expanduser("~/.local/state/farmctl")
    return Path(base) / "last_poll.json"


def _status_table(statuses: list[RigStatus], title: str) -> Table:
    """A rich table of rig statuses; offline rigs show their last-seen time, no values."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    table = Table(title=title)
    for col in ("rig", "mac", "model", "state", "TH/s", "exp TH/s", "W", "max C", "fans", "pool"):
        table.add_column(
            col, justify="right" if col in ("TH/s", "exp TH/s", "W", "max C") else "left"
        )
    table.add_column("last seen")
    colors = {"hashing": "green", "curtailed": "cyan", "idle": "yellow", "offline": "red"}
    for s in statuses:
        temps = [t for b in s.boards for t in (b.temp_c, b.chip_temp_c) if t is not None]
        pool = next((p.url for p in s.pools if p.url), None)
        seen = f"{int((now - s.last_seen).total_seconds())} s ago" if s.last_seen else "never"
        state = f"[{colors.get(s.state, 'magenta')}]{s.state}[/]"
        if s.state in ("offline", "error") and s.state_reason:
            state += f" ({s.state_reason[:40]})"
        table.add_row(
            f"{s.ip}:{s.port}",
            s.mac or "-",
            s.model or "-",
            state,
            f"{s.hashrate_ths:.2f}" if s.hashrate_ths is not None else "-",
            f"{s.expected_hashrate_ths:.2f}" if s.expected_hashrate_ths is not None else "-",
            f"{s.power_w:.0f}" if s.power_w is not None else "-",
            f"{max(temps):.0f}" if temps else "-",
            ",".join(str(f) for f in s.fans_rpm) or "-",
            pool or "-",
            seen,
        )
    return table


def _summary_line(statuses: list[RigStatus], elapsed_s: float) -> str:
    from miners.fleet import summarize

    counts = summarize(statuses)
    parts = " ".join(f"{state}={n}" for state, n in counts.items())
    rate = len(statuses) / elapsed_s if elapsed_s > 0 else 0.0
    return f"rigs={len(statuses)} {parts} elapsed_s={elapsed_s:.3f} rigs_per_s={rate:.0f}"


@miners_app.command("poll")
def poll_cmd(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="HOST:PORT, HOST:PORTLO-PORTHI or a CIDR (port 4028); several allowed."
        ),
    ],
    once: Annotated[
        bool, typer.Option("--once", help="Poll once and exit (else every --interval).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per rig per line.")
    ] = False,
    summary: Annotated[
        bool, typer.Option("--summary", help="Counts by state and elapsed time.")
    ] = False,
    deadline: Annotated[float, typer.Option(help="Seconds the whole fleet poll may take.")] = 10.0,
    timeout: Annotated[float, typer.Option(help="Seconds one rig may take.")] = 5.0,
    concurrency: Annotated[int, typer.Option(help="Rigs polled at the same time.")] = 256,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Poll from this many worker processes (one per CPU core for thousands of "
            "rigs per second); 1 polls in this process.",
        ),
    ] = 1,
    interval: Annotated[float, typer.Option(help="Seconds between polls without --once.")] = 30.0,
    state_file: Annotated[
        Path | None,
        typer.Option(
            help="Where to record the last poll (default $FARMCTL_STATE_DIR/last_poll.json)."
        ),
    ] = None,
) -> None:
    """Poll rigs: full status of each, offline rigs marked with their last-seen time."""
    import asyncio
    import json
    import time
    from datetime import UTC, datetime

    from rich.console import Console

    from miners.fleet import FleetPoller, TargetError, parse_targets, run_loop
    from miners.pollfile import PollSnapshot, write_poll
    from miners.shards import ShardedFleetPoller

    if as_json and summary:
        raise typer.BadParameter("choose one of --json and --summary")
    try:
        parsed = parse_targets(targets)
    except TargetError as exc:
        raise typer.BadParameter(str(exc)) from None
    poller: FleetPoller | ShardedFleetPoller
    try:
        if workers > 1:
            poller = ShardedFleetPoller(
                parsed, workers=workers, concurrency=concurrency, rig_timeout_s=timeout
            )
        else:
            poller = FleetPoller(parsed, concurrency=concurrency, rig_timeout_s=timeout)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    path = state_file or _default_state_file()
    console = Console()

    async def run() -> None:
        while True:
            started = time.perf_counter()
            statuses = await poller.poll_once(deadline)
            elapsed = time.perf_counter() - started
            write_poll(path, PollSnapshot(datetime.now(UTC), elapsed, statuses))
            if as_json:
                out = sys.stdout
                for status in statuses:
                    out.write(json.dumps(status.to_dict(), separators=(",", ":")) + "\n")
                out.flush()
            elif summary:
                print(_summary_line(statuses, elapsed), flush=True)
            else:
                console.print(_status_table(statuses, f"{len(statuses)} rigs"))
                print(_summary_line(statuses, elapsed), flush=True)
            if once:
                return
            await asyncio.sleep(max(0.0, interval - elapsed))

    try:
        run_loop(run())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        if isinstance(poller, ShardedFleetPoller):
            poller.close()


@miners_app.command("scan")
def scan_cmd(
    ranges: Annotated[
        list[str],
        typer.Argument(help="CIDR, HOST, HOST:PORT or HOST:PORTLO-PORTHI; no port: each --port."),
    ],
    ports: Annotated[
        list[int] | None, typer.Option("--port", help="Ports probed (repeatable; 4028 and 80).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per rig found per line.")
    ] = False,
    connect_timeout: Annotated[float, typer.Option(help="Stage 1: seconds per TCP connect.")] = 1.0,
    identify_timeout: Annotated[
        float, typer.Option(help="Stage 2: seconds per identification.")
    ] = 3.0,
    deadline: Annotated[float, typer.Option(help="Seconds each stage may take.")] = 60.0,
    concurrency: Annotated[int, typer.Option(help="Connections in flight in stage 1.")] = 1024,
) -> None:
    """Discover rigs: TCP connect over the range, then identify what answers."""
    import json

    from rich.console import Console

    from miners.fleet import TargetError, run_loop
    from miners.scan import scan, scan_targets

    try:
        targets = scan_targets(ranges, ports or [4028, 80])
    except TargetError as exc:
        raise typer.BadParameter(str(exc)) from None
    report = run_loop(
        scan(
            targets,
            connect_timeout_s=connect_timeout,
            identify_timeout_s=identify_timeout,
            stage1_deadline_s=deadline,
            stage2_deadline_s=deadline,
            concurrency=concurrency,
        )
    )
    if as_json:
        for found in report.rigs:
            print(json.dumps(found.to_dict(), separators=(",", ":")))
    else:
        console = Console()
        table = Table(title=f"{len(report.rigs)} rigs found")
        for col in ("host", "port", "family"):
            table.add_column(col)
        for found in report.rigs:
            table.add_row(found.host, str(found.port), found.family or "-")
        console.print(table)
    unknown = [f for f in report.found if f.family is None]
    print(
        f"probed={report.probed} open={len(report.open)} rigs={len(report.rigs)} "
        f"unidentified={len(unknown)} stage1_s={report.stage1_s:.2f} stage2_s={report.stage2_s:.2f}"
        + (f" stage1_unfinished={report.stage1_unfinished}" if report.stage1_unfinished else ""),
        file=sys.stderr,
    )


@miners_app.command("status")
def status_cmd(
    state_file: Annotated[
        Path | None,
        typer.Option(help="Poll file to show (default $FARMCTL_STATE_DIR/last_poll.json)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per rig per line.")
    ] = False,
) -> None:
    """Show the last poll as a table (offline rigs with their last-seen time, no stale values)."""
    import json

    from rich.console import Console

    from miners.pollfile import PollFileError, read_poll

    path = state_file or _default_state_file()
    try:
        snapshot = read_poll(path)
    except PollFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        for status in snapshot.rigs:
            print(json.dumps(status.to_dict(), separators=(",", ":")))
        return
    console = Console()
    title = f"{len(snapshot.rigs)} rigs, polled {snapshot.polled_at:%Y-%m-%d %H:%M:%S %Z}"
    console.print(_status_table(snapshot.rigs, title))
    print(_summary_line(snapshot.rigs, snapshot.elapsed_s))


# --- sim ---
def sim_cmd(
    rigs: Annotated[
        int | None, typer.Option("--rigs", "-n", help="Total rigs; the mix becomes weights.")
    ] = None,
    mix: Annotated[
        str,
        typer.Option(
            "--mix",
            help="FAMILY=N,... (counts, or weights with --rigs). Families: antminer, braiins, "
            "whatsminer, avalon, luxos, cgminer, bitaxe.",
        ),
    ] = "antminer=4,whatsminer=2,braiins=1,avalon=1,luxos=1,cgminer=1,bitaxe=1",
    base_port: Annotated[
        int,
        typer.Option(
            "--base-port", help="First port (RPC ports, then HTTP/v3); 0 = free ports 10000-32767."
        ),
    ] = 0,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", help="Delay before every reply.")
    ] = 0.0,
    fault_share: Annotated[
        float, typer.Option("--fault-share", help="Share of rigs given one random fault.")
    ] = 0.0,
    fault: Annotated[
        list[str] | None,
        typer.Option("--fault", help="INDEX=FAULT (repeatable), e.g. 3=hang, 7=foreign_pool."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --fault-share.")] = 0,
    ramp_up_s: Annotated[float, typer.Option("--ramp-up-s", help="Resume ramp.")] = 5.0,
    ramp_down_s: Annotated[float, typer.Option("--ramp-down-s", help="Curtail ramp.")] = 1.0,
    reply_cache_s: Annotated[
        float, typer.Option("--reply-cache-s", help="Rebuild read replies at most this often.")
    ] = 1.0,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Write the JSON manifest here, not stdout.")
    ] = None,
    duration_s: Annotated[
        float | None, typer.Option("--duration-s", help="Stop after this long (default: ^C).")
    ] = None,
) -> None:
    """Run simulated rigs of mixed families on real TCP/HTTP ports and print their manifest."""
    import logging

    from miners.fleet import run_loop
    from miners.sim import Simulator, parse_mix
    from miners.sim.rig import Fault
    from miners.sim.runner import serve, size_mix

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        counts = size_mix(parse_mix(mix), rigs)
        faults = []
        for item in fault or []:
            number, sep, name = item.partition("=")
            if not sep or not number.strip().isdigit():
                raise ValueError(f"bad --fault {item!r}: expected INDEX=FAULT")
            faults.append((int(number), Fault(name.strip())))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    sim = Simulator(
        counts,
        host=host,
        base_port=base_port,
        latency_ms=latency_ms,
        ramp_up_s=ramp_up_s,
        ramp_down_s=ramp_down_s,
        reply_cache_s=reply_cache_s,
    )
    for index, f in faults:
        if not 0 <= index < len(sim.rigs):
            typer.echo(f"error: --fault index {index} outside 0..{len(sim.rigs) - 1}", err=True)
            raise typer.Exit(code=2)
        sim.set_fault(index, f)
    if fault_share > 0:
        sim.sprinkle_faults(fault_share, seed)
    try:
        run_loop(serve(sim, manifest=manifest, duration_s=duration_s))  # uvloop when installed
    except OSError as exc:
        typer.echo(f"error: cannot bind the simulator's ports: {exc}", err=True)
        raise typer.Exit(code=1) from exc


def register(app: typer.Typer) -> None:
    """Attach `sim` to the root app (the fleet commands live in the shared `miners` group)."""
    app.command("sim")(sim_cmd)
