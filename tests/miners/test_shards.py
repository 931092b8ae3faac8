"""The fleet poll from worker processes: same statuses as in-process, and a dead or hung
worker costs its rigs one poll (offline, identity kept), never the whole fleet."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from miners.detect import driver_for
from miners.driver import RigDriver
from miners.fleet import FleetPoller, Target
from miners.shards import RigSpec, ShardedFleetPoller
from miners.sim.simulator import Simulator

MIX = {"antminer": 4, "braiins": 2, "whatsminer": 2}


def _targets(sim: Simulator) -> list[Target]:
    return [Target(r.host, r.port) for r in sim.rigs if r.port is not None]


async def test_sharded_poll_gives_the_in_process_statuses_in_target_order() -> None:
    async with Simulator(MIX) as sim:
        targets = _targets(sim)
        # Antminers get a spec (no detection); the others are detected by their worker.
        specs = {
            Target(r.host, r.port): RigSpec("antminer", r.http_port or 80)
            for r in sim.rigs
            if r.family == "antminer" and r.port is not None
        }
        drivers: dict[Target, RigDriver] = {
            t: driver_for("antminer", t.host, t.port, http_port=s.http_port)
            for t, s in specs.items()
        }
        local = await FleetPoller(targets, drivers=drivers).poll_once(10.0)
        with ShardedFleetPoller(targets, workers=3, specs=specs, concurrency=6) as poller:
            sharded = await poller.poll_once(10.0)
            assert len([p for p in poller.worker_pids if p]) == 3
            assert poller.stats.rigs == 8 and poller.stats.online == 8
    assert [s.port for s in sharded] == [t.port for t in targets]
    assert [s.mac for s in sharded] == [s.mac for s in local]
    assert [s.mac for s in sharded][:4] == [r.mac.upper() for r in sim.rigs][:4]
    assert [s.family for s in sharded] == [r.family for r in sim.rigs]
    assert all(s.state == "hashing" for s in sharded)
    for ours, theirs in zip(sharded, local, strict=True):
        assert (ours.mac, ours.model, len(ours.boards), ours.fans_rpm) == (
            theirs.mac,
            theirs.model,
            len(theirs.boards),
            theirs.fans_rpm,
        )


async def test_a_killed_worker_costs_its_rigs_one_poll() -> None:
    async with Simulator({"antminer": 6}) as sim:
        targets = _targets(sim)
        with ShardedFleetPoller(targets, workers=2) as poller:
            first = await poller.poll_once(10.0)
            assert all(s.state == "hashing" for s in first)
            dead_pid = poller.worker_pids[0]
            assert dead_pid is not None
            os.kill(dead_pid, signal.SIGKILL)

            second = await poller.poll_once(10.0)
            # Worker 0 had targets 0, 2, 4 (round-robin): offline with the reason and the
            # identity of their last good read; worker 1's rigs were read as usual.
            for i, status in enumerate(second):
                if i % 2 == 0:
                    assert status.state == "offline"
                    assert status.state_reason is not None
                    # EOFError or ConnectionResetError, by when the kill lands
                    assert status.state_reason.startswith("poll worker 0 failed: ")
                    assert status.mac == first[i].mac
                    assert status.hashrate_ths is None
                    assert status.last_seen == first[i].last_seen
                else:
                    assert status.state == "hashing"
            assert poller.stats.offline == 3 and poller.stats.deadline_hit

            third = await poller.poll_once(10.0)  # worker 0 started afresh
            assert all(s.state == "hashing" for s in third)
            assert poller.worker_pids[0] not in (None, dead_pid)


async def test_a_hung_worker_is_replaced_after_the_grace() -> None:
    async with Simulator({"antminer": 4}) as sim:
        targets = _targets(sim)
        with ShardedFleetPoller(targets, workers=2, reply_grace_s=0.5) as poller:
            await poller.poll_once(10.0)
            hung = poller.worker_pids[1]
            assert hung is not None
            os.kill(hung, signal.SIGSTOP)
            try:
                second = await poller.poll_once(1.0)
            finally:
                with contextlib.suppress(ProcessLookupError):  # the poller killed it already
                    os.kill(hung, signal.SIGKILL)
            states = [s.state for s in second]
            assert states == ["hashing", "offline", "hashing", "offline"]
            assert second[1].state_reason == (
                "poll worker 1 failed: TimeoutError: no statuses within 1.5 s"
            )
            third = await poller.poll_once(10.0)
            assert [s.state for s in third] == ["hashing"] * 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be >= 1, got 0"),
        ({"workers": 4, "concurrency": 2}, "concurrency must be >= workers (4), got 2"),
        ({"workers": 2, "rig_timeout_s": 0.0}, "rig_timeout_s must be > 0, got 0.0"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as err:
        ShardedFleetPoller([Target("127.0.0.1", 4028)], **kwargs)  # type: ignore[arg-type]
    assert str(err.value) == message
