"""Reply reading and parsing: our jsonrepair + parsers against pyasic 0.79, same replies, same run.

1. Reading raw reply bytes: `loads_lenient` vs pyasic's `BaseMinerRPCAPI._load_api_data` (text
   replaces then json.loads) on a valid S19 stats reply and the malformed S9 vnish stats (`}{`).
   Both measured as CPU time per reply, best of 5 rounds.
2. Correctness on every shared file: how many replies each reads to the same value strict JSON
   (or our repair) gives, and how many string values a reader changes. pyasic's replaces run
   over the whole text, so they also edit string contents.
3. Parsing one rig: our `parse_status("antminer", {summary, stats, pools, version})` vs pyasic's
   BMMinerS9 `_get_hashrate/_get_hashboards/_get_fans/_get_uptime/_get_pools/_get_fw_ver/
   _get_expected_hashrate` fed the same dicts (no I/O on either side).

4. RPC round trips: `rpc_command(..., "summary")` vs pyasic's `BMMinerRPCAPI.send_command`
   against one local server process answering the S19 summary capture (+ NUL), 100 requests
   in flight; requests/s and client CPU per request.

Run: `python -m bench decode`. Reads ../shared/miner-responses in place; no network.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from miners.jsonrepair import loads_lenient
from miners.parsers import parse_status

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "miner-responses"


def _cpu_us(fn: Callable[[], Any], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - started) / n)
    return best * 1e6


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def main() -> None:
    """Print CPU time per reply/rig for us and pyasic, and the ratio."""
    try:
        from pyasic.miners.antminer.bmminer.X9.S9 import BMMinerS9
        from pyasic.rpc.base import BaseMinerRPCAPI
    except ImportError:
        print("pyasic not installed (pip install 'farmctl[bench]'); skipping")
        return
    if not SHARED.is_dir():
        print(f"{SHARED} absent; skipping")
        return
    valid = (SHARED / "antminer/stats_s19pro_overheating.json").read_bytes() + b"\x00"
    broken = (SHARED / "antminer/stats_s9_nicehash_missing_comma.json").read_bytes() + b"\x00"
    pyasic_load = BaseMinerRPCAPI._load_api_data

    print("1. read one raw reply (CPU us per reply, best of 5)")
    for label, raw in (("valid S19 stats", valid), ("S9 vnish stats with }{", broken)):

        def read_ours(raw: bytes = raw) -> Any:
            return loads_lenient(raw)

        def read_theirs(raw: bytes = raw) -> Any:
            return pyasic_load(raw)

        ours = _cpu_us(read_ours, 2000)
        theirs = _cpu_us(read_theirs, 2000)
        print(f"   {label:26s} ours {ours:7.1f}  pyasic {theirs:7.1f}  ratio {theirs / ours:5.2f}x")

    print("2. every shared reply: read OK / string values changed vs the reply's own strings")
    ok_ours = ok_theirs = changed_ours = changed_theirs = total = 0
    for path in sorted(SHARED.rglob("*.json")):
        raw = path.read_bytes()
        total += 1
        ours_value, _ = loads_lenient(raw)
        ok_ours += 1
        try:
            reference = json.loads(raw)
        except ValueError:
            reference = ours_value  # malformed: strings compared with our repair
        ref_strings = _strings(reference)
        changed_ours += sum(a != b for a, b in zip(ref_strings, _strings(ours_value), strict=False))
        try:
            theirs_value = pyasic_load(raw)
        except Exception:
            continue
        ok_theirs += 1
        their_strings = _strings(theirs_value)
        changed_theirs += sum(a != b for a, b in zip(ref_strings, their_strings, strict=False))
        changed_theirs += abs(len(ref_strings) - len(their_strings))
    print(f"   ours   read {ok_ours}/{total}, strings changed {changed_ours}")
    print(f"   pyasic read {ok_theirs}/{total}, strings changed {changed_theirs}")
    sample = b'{"STATUS":[{"STATUS":"S","Msg":"Summary","Description":"note: a}{b ,} x"}],"id":1}'
    print(
        f"   string 'note: a}}{{b ,}} x' -> ours {loads_lenient(sample)[0]['STATUS'][0]['Description']!r}"
        f", pyasic {pyasic_load(sample)['STATUS'][0]['Description']!r}"
    )

    print("3. parse one S9 rig from summary+stats+pools+version dicts (CPU us per rig)")
    replies = {
        "summary": loads_lenient((SHARED / "braiins/summary_bosminer_plus_s9.json").read_bytes())[
            0
        ],
        "stats": loads_lenient(broken)[0],
        "pools": loads_lenient((SHARED / "antminer/pools_s19_sleeping.json").read_bytes())[0],
        "version": loads_lenient((SHARED / "antminer/version_s19pro_bmminer.json").read_bytes())[0],
    }
    ours = _cpu_us(lambda: parse_status("antminer", replies), 1000)
    miner = BMMinerS9("127.0.0.1")

    async def pyasic_parse() -> None:
        await miner._get_hashrate(rpc_summary=replies["summary"])
        await miner._get_hashboards(rpc_stats=replies["stats"])
        await miner._get_fans(rpc_stats=replies["stats"])
        await miner._get_uptime(rpc_stats=replies["stats"])
        await miner._get_expected_hashrate(rpc_stats=replies["stats"])
        await miner._get_pools(rpc_pools=replies["pools"])
        await miner._get_fw_ver(rpc_version=replies["version"])

    loop = asyncio.new_event_loop()
    try:
        theirs = _cpu_us(lambda: loop.run_until_complete(pyasic_parse()), 1000)
        coroutine_floor = _cpu_us(lambda: loop.run_until_complete(asyncio.sleep(0)), 1000)
    finally:
        loop.close()
    print(
        f"   ours {ours:7.1f}  pyasic {theirs:7.1f} (of which {coroutine_floor:.1f} is the "
        f"event-loop round trip)  ratio {theirs / ours:5.2f}x"
    )
    status = parse_status("antminer", replies)
    print(
        f"   ours read: {status.hashrate_ths} TH/s, {len(status.boards)} boards, "
        f"fans {status.fans_rpm}, {len(status.pools)} pools, state {status.state}"
    )
    rpc_section()


def _rpc_server(port_queue: Any, body: bytes) -> None:
    """Body of the server process: answer every connection with `body` and close."""

    async def serve() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(4096)
            writer.write(body)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        port_queue.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


async def _round_trips(call: Callable[[], Any], total: int, in_flight: int) -> tuple[float, float]:
    """(requests per second, client CPU microseconds per request)."""
    sem = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with sem:
            await call()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one() for _ in range(total)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return total / wall, cpu / total * 1e6


def rpc_section(total: int = 3000) -> None:
    """Section 4: RPC round trips against a server in another process."""
    from pyasic.rpc.bmminer import BMMinerRPCAPI

    from miners.rpc import rpc_command

    body = (SHARED / "antminer/summary_s19pro.json").read_bytes() + b"\x00"
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    proc = ctx.Process(target=_rpc_server, args=(ports, body), daemon=True)
    proc.start()
    try:
        port = ports.get(timeout=30)
        api = BMMinerRPCAPI("127.0.0.1", port=port)

        async def run() -> None:
            for _ in range(2):  # second round is the one printed (warm)
                ours = await _round_trips(
                    lambda: rpc_command("127.0.0.1", port, "summary"), total, 100
                )
                theirs = await _round_trips(lambda: api.send_command("summary"), total, 100)
            print(
                f"   ours   {ours[0]:7.0f} req/s, {ours[1]:6.1f} us CPU/req\n"
                f"   pyasic {theirs[0]:7.0f} req/s, {theirs[1]:6.1f} us CPU/req"
                f"   (CPU ratio {theirs[1] / ours[1]:4.2f}x)"
            )

        print(
            f"4. RPC round trips, {total} summary requests, 100 in flight (server in its own process)"
        )
        asyncio.run(run())
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()
