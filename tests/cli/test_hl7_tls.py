"""MLLP over TLS: `hospital hl7 listen --tls-cert --tls-key` with a certificate signed by a CA
of the test's own (openssl, as scripts/backing-services makes the broker's with keytool).
python-hl7's asyncio client with that CA gets its ACK; one without the CA, or a plain TCP
client, is refused. And the listener binds the loopback interface unless told otherwise."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from hl7.mllp import open_hl7_connection

from scheduler.db.hl7 import Inbox

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
A04 = (
    "MSH|^~\\&|REG|HOSP|HOSPITAL|SCHEDULER|20261205080000||ADT^A04^ADT_A01|TLS1|P|2.5\r"
    "EVN|A04|20261205080000\rPID|||MRN-TLS^^^HOSP^MR\rPV1||E\rOBX|1|NM|75636-1^ESI^LN||2\r"
)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA, and the listener's key and certificate for 127.0.0.1 signed by it."""
    d = tmp_path_factory.mktemp("tls")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=hospital test CA",
        cwd=d,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "listener.key",
        "-out",
        "listener.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "listener.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "listener.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        cwd=d,
    )
    return d


@pytest.fixture
def listener(tmp_path, certificates):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    subprocess.run(
        [sys.executable, "-m", "cli", "db", "upgrade", "--db", url],
        env=ENV,
        check=True,
        capture_output=True,
    )
    inbox = Inbox(url, "run-tls")  # as `hospital run --arrivals hl7` opens it
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "hl7",
            "listen",
            "--db",
            url,
            "--port",
            "0",
            "--tls-cert",
            str(certificates / "listener.pem"),
            "--tls-key",
            str(certificates / "listener.key"),
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline().split()[1])
    yield port, inbox
    process.terminate()
    process.wait(timeout=30)
    inbox.close()


async def send(port: int, context: ssl.SSLContext | None) -> str:
    reader, writer = await open_hl7_connection("127.0.0.1", port, ssl=context, encoding="utf-8")
    try:
        writer.writeblock(A04.encode())
        await writer.drain()
        return (await asyncio.wait_for(reader.readblock(), 10)).decode()
    finally:
        writer.close()


def test_a_client_trusting_the_ca_is_answered(listener, certificates):
    port, inbox = listener
    context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    answer = asyncio.run(send(port, context))
    assert "MSA|AA|TLS1" in answer
    [arrival] = inbox.take(0, 0)
    assert (arrival.patient_id, arrival.acuity) == ("MRN-TLS", 2)


def test_a_client_without_the_ca_is_refused(listener):
    port, _ = listener
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(send(port, ssl.create_default_context()))


def test_a_plain_client_gets_no_answer(listener):
    port, inbox = listener
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        plain.sendall(b"\x0b" + A04.encode() + b"\x1c\r")
        try:
            answer = plain.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert b"MSA" not in answer
    assert inbox.take(0, 0) == []


def test_the_listener_binds_loopback_by_default():
    from scheduler.config import Config

    assert Config().hl7.host == "127.0.0.1"
