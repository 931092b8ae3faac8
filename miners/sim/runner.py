"""Running the simulator as its own process (`farmctl sim`): mix sizing, manifest, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from miners.sim.simulator import Simulator

logger = logging.getLogger(__name__)


def size_mix(weights: Mapping[str, int], rigs: int | None) -> dict[str, int]:
    """Counts per family: `weights` as is, or scaled to `rigs` in total (largest remainder)."""
    if rigs is None:
        return dict(weights)
    if rigs < 0:
        raise ValueError(f"--rigs must be >= 0, got {rigs}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the mix has no rigs in it")
    exact = {f: rigs * w / total for f, w in weights.items()}
    counts = {f: int(x) for f, x in exact.items()}
    short = rigs - sum(counts.values())
    for f in sorted(exact, key=lambda f: exact[f] - counts[f], reverse=True)[:short]:
        counts[f] += 1
    return {f: n for f, n in counts.items() if n}


def raise_fd_limit(needed: int) -> None:
    """Lift the soft open-files limit towards the hard one: every rig holds 1-2 listening sockets.

    Raises OSError naming the shortfall when even the hard limit is too low.
    """
    try:
        import resource
    except ImportError:  # not on POSIX: nothing to lift
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise OSError(f"need {needed} open files for the simulator, hard limit is {hard}")


async def serve(
    sim: Simulator,
    *,
    manifest: Path | None = None,
    duration_s: float | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Start, publish the manifest (file, else stdout), serve until SIGINT/SIGTERM or duration."""
    # listening sockets, plus headroom for the connections being served
    raise_fd_limit(2 * len(sim.rigs) + 1024)
    await sim.start()
    try:
        if manifest is not None:
            sim.write_manifest(manifest)
            logger.info("sim manifest written path=%s rigs=%d", manifest, len(sim.rigs))
        else:
            out.write(json.dumps(sim.manifest()) + "\n")
            out.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
    finally:
        await sim.stop()
