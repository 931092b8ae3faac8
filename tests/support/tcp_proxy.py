"""A TCP proxy on 127.0.0.1 that a test can sever and restore: a network cut on demand.

`sever()` closes every connection through it and refuses new ones (accepted, then closed at
once) until `restore()`: the client sees what a reset WAN link looks like. The proxy runs its
own asyncio loop in a daemon thread, so a synchronous test drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from controller.broker import free_port


class TcpProxy:
    """Forward `listen_port` to `target_host:target_port` until severed."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.severed = False
        self.refused = 0  # connections closed at once while severed
        self.accepted = 0  # connections forwarded
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> TcpProxy:
        """Listen; returns self."""
        self._thread.start()
        self._call(self._listen())
        return self

    def sever(self) -> None:
        """Cut: close every open connection, refuse new ones."""
        self._call(self._sever())

    def restore(self) -> None:
        """Forward new connections again."""
        self._call(self._restore())

    def close(self) -> None:
        """Stop listening, close every connection, stop the thread."""
        if not self._thread.is_alive():
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _sever(self) -> None:
        self.severed = True
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()

    async def _restore(self) -> None:
        self.severed = False

    async def _close(self) -> None:
        await self._sever()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.severed:
            self.refused += 1
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        self.accepted += 1
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                _abort(w)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once, with a reset rather than an orderly FIN (a cut link, not a goodbye)."""
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
