"""The e2e tests' fault proxy (tests/faultproxy.py), against an echo server on loopback."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.timeout(30)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxy():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy("127.0.0.1", server.server_address[1]) as running:
        yield running
    server.shutdown()
    server.server_close()


def connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=5)


def echo(connection: socket.socket, data: bytes = b"ping") -> bytes:
    connection.sendall(data)
    return connection.recv(4096)


def test_forwards_both_ways(proxy):
    with connect(proxy) as connection:
        assert echo(connection) == b"ping"
    assert proxy.connections == 1


def test_latency_delays_each_way(proxy):
    proxy.latency = 0.2
    with connect(proxy) as connection:
        started = time.monotonic()
        assert echo(connection) == b"ping"
        assert time.monotonic() - started >= 0.4  # 0.2 s there, 0.2 s back


def test_cut_closes_open_connections(proxy):
    with connect(proxy) as connection:
        assert echo(connection) == b"ping"
        assert proxy.cut() == 2  # the client's side and the server's
        with _closed():
            assert echo(connection) == b""


def test_outage_refuses_new_connections_until_it_ends(proxy):
    proxy.outage(1.0)
    with connect(proxy) as connection, _closed():
        assert echo(connection) == b""
    assert proxy.refused == 1
    time.sleep(1.1)
    with connect(proxy) as connection:
        assert echo(connection) == b"ping"


class _closed:
    """A read on a closed connection gives b'' or a reset: either is a closed connection."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        return kind is not None and issubclass(kind, (ConnectionResetError, BrokenPipeError))


def test_kafka_proxy_gives_its_own_address_for_the_brokers():
    """A Kafka answer naming the broker (127.0.0.1 and its port) names the proxy instead."""
    import struct

    from tests.faultproxy import KafkaFaultProxy

    class _Broker(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(4096)
            port = self.server.server_address[1]
            body = b"\x00\x00\x00\x07" + b"\x00\x09127.0.0.1" + struct.pack(">i", port)
            self.request.sendall(struct.pack(">i", len(body)) + body)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Broker)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with (
            KafkaFaultProxy("127.0.0.1", server.server_address[1]) as proxy,
            connect(proxy) as connection,
        ):
            answer = echo(connection, b"\x00\x00\x00\x01x")
            assert answer.endswith(b"127.0.0.1" + struct.pack(">i", proxy.port)), answer
            assert len(answer) == 4 + struct.unpack(">i", answer[:4])[0]
    finally:
        server.shutdown()
        server.server_close()
