"""miners.rpc against real asyncio TCP servers on 127.0.0.1 playing well and badly behaved rigs."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from miners.rpc import (
    RpcConnectionError,
    RpcError,
    RpcReplyError,
    RpcTimeoutError,
    parse_text_reply,
    rpc_command,
    rpc_multi,
    status_error,
)

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]

SUMMARY = {
    "STATUS": [{"STATUS": "S", "When": 1, "Code": 11, "Msg": "Summary", "Description": "cgminer"}],
    "SUMMARY": [{"Elapsed": 50474, "GHS 5s": 110566.89, "GHS av": 111834.85}],
    "id": 1,
}
POOLS = {
    "STATUS": [{"STATUS": "S", "When": 1, "Code": 7, "Msg": "1 Pool(s)", "Description": "cgminer"}],
    "POOLS": [{"POOL": 0, "URL": "stratum+tcp://pool:3333", "User": "w", "Status": "Alive"}],
    "id": 1,
}
INVALID = {
    "STATUS": [{"STATUS": "E", "When": 1, "Code": 14, "Msg": "Invalid command", "Description": ""}],
    "id": 1,
}


class FakeRig:
    """A TCP server that reads one request per connection and lets a handler answer it."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.port = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        request = await reader.read(65536)
        self.requests.append(request)
        try:
            await self.handler(request, writer)
        except asyncio.CancelledError:
            pass  # test over: a hanging rig is stopped
        finally:
            if not writer.is_closing():
                writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeRig]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self.server.close()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.server.wait_closed()


def reply_with(body: bytes, *, nul: bool = True, close: bool = True) -> Handler:
    async def handler(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(body + (b"\x00" if nul else b""))
        await writer.drain()
        if not close:
            await asyncio.sleep(5)  # the client must finish on the NUL, not wait for EOF

    return handler


async def test_reply_ends_at_nul_without_waiting_for_eof() -> None:
    async with FakeRig(reply_with(json.dumps(SUMMARY).encode(), close=False)).running() as rig:
        reply = await asyncio.wait_for(rpc_command("127.0.0.1", rig.port, "summary"), 2)
    assert reply["SUMMARY"][0]["GHS 5s"] == 110566.89
    assert json.loads(rig.requests[0]) == {"command": "summary"}


async def test_reply_ends_at_eof_without_nul_and_parameter_is_sent() -> None:
    async with FakeRig(reply_with(json.dumps(POOLS).encode(), nul=False)).running() as rig:
        reply = await rpc_command("127.0.0.1", rig.port, "pools", "0")
    assert reply["POOLS"][0]["URL"] == "stratum+tcp://pool:3333"
    assert json.loads(rig.requests[0]) == {"command": "pools", "parameter": "0"}


async def test_reply_in_many_small_chunks() -> None:
    body = json.dumps(SUMMARY).encode() + b"\x00"

    async def dribble(_request: bytes, writer: asyncio.StreamWriter) -> None:
        for i in range(0, len(body), 17):
            writer.write(body[i : i + 17])
            await writer.drain()
            await asyncio.sleep(0.001)

    async with FakeRig(dribble).running() as rig:
        reply = await rpc_command("127.0.0.1", rig.port, "summary")
    assert reply == SUMMARY


async def test_malformed_real_reply_is_repaired(miner_responses: Path) -> None:
    raw = (miner_responses / "antminer/stats_l3plus_missing_comma.json").read_bytes()
    async with FakeRig(reply_with(raw)).running() as rig:
        reply = await rpc_command("127.0.0.1", rig.port, "stats")
    assert reply["STATS"][0]["Type"] == "Antminer L3+"
    assert reply["STATS"][1]["chain_rate4"] == "126.59"


async def test_hang_gives_timeout_naming_rig_and_command() -> None:
    async def hang(_request: bytes, _writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with FakeRig(hang).running() as rig:
        with pytest.raises(RpcTimeoutError) as info:
            await rpc_command("127.0.0.1", rig.port, "summary", read_timeout=0.2)
    err = info.value
    assert err.rig == f"127.0.0.1:{rig.port}"
    assert err.command == "summary"
    assert "within 0.2s" in err.fault
    assert f"127.0.0.1:{rig.port}" in str(err) and "'summary'" in str(err)


async def test_partial_reply_then_hang_is_a_timeout_with_byte_count() -> None:
    async def partial(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"STATUS":[{"STATUS":"S"')
        await writer.drain()
        await asyncio.sleep(5)

    async with FakeRig(partial).running() as rig:
        with pytest.raises(RpcTimeoutError, match="24 bytes received"):
            await rpc_command("127.0.0.1", rig.port, "stats", read_timeout=0.2)


async def test_reply_over_size_cap_is_refused() -> None:
    async def flood(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"[" + b"1," * 20_000 + b"1]\x00")
        await writer.drain()

    async with FakeRig(flood).running() as rig:
        with pytest.raises(RpcReplyError) as info:
            await rpc_command("127.0.0.1", rig.port, "stats", max_bytes=1000)
    assert "1000 byte cap" in info.value.fault


async def test_connection_reset_mid_reply() -> None:
    async def reset(_request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"STATUS":[{"STATUS":"S"')
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        # SO_LINGER 0 makes close() send RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with FakeRig(reset).running() as rig:
        with pytest.raises(RpcReplyError) as info:
            await rpc_command("127.0.0.1", rig.port, "summary")
    assert "connection lost" in info.value.fault or "unreadable" in info.value.fault


async def test_connection_refused_is_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RpcConnectionError) as info:
        await rpc_command("127.0.0.1", port, "summary", connect_timeout=1)
    assert info.value.rig == f"127.0.0.1:{port}"
    assert "connect failed" in info.value.fault


async def test_garbage_reply_names_rig_command_and_fault() -> None:
    async with FakeRig(reply_with(b"\x89PNG\r\n garbage")).running() as rig:
        with pytest.raises(RpcReplyError) as info:
            await rpc_command("127.0.0.1", rig.port, "devs")
    assert info.value.command == "devs"
    assert "unreadable JSON" in info.value.fault


async def test_empty_reply_is_an_error() -> None:
    async with FakeRig(reply_with(b"")).running() as rig:
        with pytest.raises(RpcReplyError, match="empty reply"):
            await rpc_command("127.0.0.1", rig.port, "summary")


async def test_check_status_raises_with_rig_message() -> None:
    async with FakeRig(reply_with(json.dumps(INVALID).encode())).running() as rig:
        reply = await rpc_command("127.0.0.1", rig.port, "estats")
        assert status_error(reply) == "STATUS E Code 14: Invalid command"
        with pytest.raises(RpcReplyError, match="Invalid command"):
            await rpc_command("127.0.0.1", rig.port, "estats", check_status=True)


async def test_text_mode_request_and_reply(miner_responses: Path) -> None:
    raw = (miner_responses / "avalon/ascset_led_text_mode.txt").read_bytes()
    async with FakeRig(reply_with(raw)).running() as rig:
        reply = await rpc_command("127.0.0.1", rig.port, "ascset", "0,led,1-1", text_mode=True)
    assert rig.requests[0] == b"ascset|0,led,1-1"
    assert reply["STATUS"][0] == {
        "STATUS": "S",
        "When": 18984,
        "Code": 119,
        "Msg": "ASC 0 set OK",
        "Description": "cgminer 4.11.1",
    }


def test_text_reply_sections_and_escapes() -> None:
    text = (
        "STATUS=S,When=5,Code=7,Msg=2 Pool(s),Description=cgminer 4.9.0|"
        "POOL=0,URL=stratum+tcp://a:3333,Status=Alive,Accepted=12|"
        "POOL=1,URL=stratum+tcp://b:3333,Status=Dead,User=x\\,y|"
        "SUMMARY,Elapsed=30,MHS av=1.5|\x00"
    )
    parsed = parse_text_reply(text)
    assert parsed["STATUS"][0]["Code"] == 7
    assert [p["URL"] for p in parsed["POOL"]] == ["stratum+tcp://a:3333", "stratum+tcp://b:3333"]
    assert parsed["POOL"][0]["Accepted"] == 12
    assert parsed["POOL"][1]["User"] == "x,y"
    assert parsed["SUMMARY"] == [{"Elapsed": 30, "MHS av": 1.5}]


def _router(refuse_joined: bool) -> Handler:
    single = {"summary": SUMMARY, "pools": POOLS}

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> None:
        command = json.loads(request)["command"]
        if "+" in command:
            if refuse_joined:
                body = INVALID
            else:
                body = {name: [single[name]] for name in command.split("+")} | {"id": 1}
        else:
            body = single[command]
        writer.write(json.dumps(body).encode() + b"\x00")
        await writer.drain()

    return handler


async def test_multi_joined_in_one_request() -> None:
    async with FakeRig(_router(refuse_joined=False)).running() as rig:
        replies = await rpc_multi("127.0.0.1", rig.port, ["summary", "pools"])
    assert replies.joined is True
    assert len(rig.requests) == 1
    assert json.loads(rig.requests[0]) == {"command": "summary+pools"}
    assert replies["summary"] == SUMMARY and replies["pools"] == POOLS


async def test_multi_falls_back_when_rig_refuses_joined_commands() -> None:
    async with FakeRig(_router(refuse_joined=True)).running() as rig:
        replies = await rpc_multi("127.0.0.1", rig.port, ["summary", "pools"])
    assert replies.joined is False
    assert [json.loads(r)["command"] for r in rig.requests] == ["summary+pools", "summary", "pools"]
    assert replies["summary"]["SUMMARY"][0]["GHS av"] == 111834.85
    assert replies["pools"]["POOLS"][0]["Status"] == "Alive"


async def test_multi_with_real_whatsminer_refusal(miner_responses: Path) -> None:
    refusal = (miner_responses / "whatsminer/error_missing_command.json").read_bytes()

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> None:
        command = json.loads(request)["command"]
        body = (
            refusal
            if "+" in command
            else json.dumps({"summary": SUMMARY, "pools": POOLS}[command]).encode()
        )
        writer.write(body + b"\x00")
        await writer.drain()

    async with FakeRig(handler).running() as rig:
        replies = await rpc_multi("127.0.0.1", rig.port, ["summary", "pools"])
    assert replies.joined is False
    assert set(replies) == {"summary", "pools"}


async def test_multi_disallowed_sends_separate_requests() -> None:
    async with FakeRig(_router(refuse_joined=False)).running() as rig:
        replies = await rpc_multi("127.0.0.1", rig.port, ["summary", "pools"], allow_multi=False)
    assert [json.loads(r)["command"] for r in rig.requests] == ["summary", "pools"]
    assert replies.joined is False


async def test_multi_propagates_connection_errors() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RpcError):
        await rpc_multi("127.0.0.1", port, ["summary", "pools"], connect_timeout=1)


async def test_invalid_port_is_a_connection_error() -> None:
    with pytest.raises(RpcConnectionError, match="invalid address"):
        await rpc_command("127.0.0.1", 70000, "summary")


@asynccontextmanager
async def never_accepting_port() -> AsyncIterator[int]:
    """A listener that never accepts, its backlog filled: further SYNs are dropped, so a
    connect hangs (on some kernels the handshake completes and the read hangs instead)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
            fillers.append(filler)
        await asyncio.sleep(0.05)
        yield listener.getsockname()[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_connect_deadline_when_the_accept_queue_is_full() -> None:
    async with never_accepting_port() as port:
        try:
            await rpc_command("127.0.0.1", port, "summary", connect_timeout=0.3, read_timeout=0.3)
        except RpcConnectionError as exc:
            assert "no connection within 0.3s" in exc.fault
        except RpcTimeoutError:
            pytest.skip("kernel accepted the handshake despite the full backlog")
        else:
            pytest.fail("a rig that never accepts gave a reply")


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    """The connect deadline takes back only its own cancellation: an outer deadline (the
    rig's, the fleet's) or a task cancel must come through as itself, not as a rig fault."""
    async with never_accepting_port() as port:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await rpc_command("127.0.0.1", port, "summary", connect_timeout=5, read_timeout=5)
        task = asyncio.create_task(
            rpc_command("127.0.0.1", port, "summary", connect_timeout=5, read_timeout=5)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # and the connect deadline itself still turns into the rig's fault, not a cancel
        try:
            await rpc_command("127.0.0.1", port, "summary", connect_timeout=0.2, read_timeout=0.2)
        except RpcConnectionError as exc:
            assert exc.fault == "no connection within 0.2s"
        except RpcTimeoutError as exc:
            assert exc.fault.startswith("no complete reply within 0.2s")
        else:
            pytest.fail("a rig that never accepts gave a reply")
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
