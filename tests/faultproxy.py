"""A TCP proxy on loopback that injects network faults between the services and a server
(PostgreSQL, a broker): latency on every chunk, every connection cut at once, new connections
refused for a while. It runs its asyncio loop on a thread of its own, so that a test drives it
with plain calls:

    with FaultProxy("127.0.0.1", 5432) as proxy:    # listens on 127.0.0.1:proxy.port
        proxy.outage(10)     # cut every connection, refuse new ones for 10 s
        proxy.latency = 0.2  # each chunk forwarded 200 ms late

A refused connection is accepted and closed at once (the client sees the server go away, as
when it restarts), not left hanging. Nothing is ever sent anywhere but to the upstream given.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time


class FaultProxy:
    kafka = False  # KafkaFaultProxy: the broker's address in its answers made the proxy's

    def __init__(
        self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1", port: int = 0
    ):
        if host not in ("127.0.0.1", "localhost") or upstream_host not in (
            "127.0.0.1",
            "localhost",
        ):
            raise ValueError("the fault proxy is for loopback only")
        self.upstream = (upstream_host, upstream_port)
        self.host, self.port = host, port
        self.latency = 0.0  # seconds added to every chunk, each way
        self.refusing_until = 0.0  # time.monotonic() before which new connections close
        self.connections = 0  # accepted and forwarded, in all
        self.refused = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._server: asyncio.base_events.Server | None = None

    # --- control, from any thread -------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._serve, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> int:
        """Close every open connection, both ways; how many there were."""

        async def cut_all() -> int:
            writers = list(self._writers)
            for writer in writers:
                writer.transport.abort()
            return len(writers)

        return self._call(cut_all())

    def refuse(self, seconds: float) -> None:
        """New connections are closed at once for `seconds` (from now)."""
        self.refusing_until = time.monotonic() + seconds

    def outage(self, seconds: float) -> int:
        """The upstream gone for `seconds`: refuse new connections, cut the open ones."""
        self.refuse(seconds)
        return self.cut()

    @property
    def refusing(self) -> bool:
        return time.monotonic() < self.refusing_until

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None

            async def close() -> None:  # on the loop's thread: asyncio is not thread-safe
                server.close()
                for writer in list(self._writers):
                    writer.transport.abort()

            self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # --- the proxy ----------------------------------------------------------------------

    async def _serve(self, client_reader, client_writer) -> None:
        if self.refusing:
            self.refused += 1
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), timeout=5
            )
        except (TimeoutError, OSError):
            client_writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {client_writer, upstream_writer}
        try:
            answers = self._kafka_answers(upstream_reader) if self.kafka else None
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, client_writer),
                self._pipe(upstream_reader, client_writer, upstream_writer, answers),
            )
        finally:
            self._writers -= {client_writer, upstream_writer}

    async def _pipe(self, reader, writer, other, chunks=None) -> None:
        """Forward one way until either side closes; then close both."""
        chunks = chunks or self._chunks(reader)
        try:
            async for chunk in chunks:
                if self.latency:
                    await asyncio.sleep(self.latency)
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for side in (writer, other):
                side.transport.abort()

    @staticmethod
    async def _chunks(reader):
        while chunk := await reader.read(65536):
            yield chunk

    async def _kafka_answers(self, reader):
        """The broker's answers, whole (Kafka frames them with a 4-byte size), each with the
        broker's address (in metadata, coordinator answers) turned into the proxy's: the
        clients then come back through the proxy, not straight to the broker. The port is
        replaced in place (same size), right after the host's name."""
        broker = self.upstream[0].encode() + struct.pack(">i", self.upstream[1])
        ours = self.upstream[0].encode() + struct.pack(">i", self.port)
        while True:
            try:
                size = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack(">i", size)[0])
            except asyncio.IncompleteReadError:
                return
            yield size + body.replace(broker, ours)


class KafkaFaultProxy(FaultProxy):
    """A fault proxy in front of a Kafka broker's PLAINTEXT listener (see `_kafka_answers`)."""

    kafka = True
