"""The probe against in-process servers: pinned versions, hostile and broken servers."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from exporter.probe import probe
from exporter.probe.deadline import Deadline
from exporter.probe.endpoint import Endpoint
from exporter.probe.hello import HELLO_RETRY_REQUEST_RANDOM
from exporter.results import ProbeResult, Reason, VerifyError, VersionResult
from exporter.target import Target, TLSMode, TLSVersion
from tests.support import tlsbytes
from tests.support.certs import TestCerts, make_test_certs
from tests.support.inproc import Behaviour, InprocServer, reset, tls_context

V = ssl.TLSVersion
ALL5 = ("ssl3", "1.0", "1.1", "1.2", "1.3")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_test_certs(tmp_path_factory.mktemp("certs"))


def context(certs: TestCerts, low: V, high: V, which: str = "rsa") -> ssl.SSLContext:
    files = certs.all()[which]
    return tls_context(str(files.cert), str(files.key), low, high)


def run(server: InprocServer, certs: TestCerts | None = None, **overrides: Any) -> ProbeResult:
    target = Target(
        host=server.host,
        port=server.port,
        servername="mail.test",
        timeout=10.0,
        ehlo_name="probe.test",
        ca_file=str(certs.ca_pem) if certs is not None else None,
    )
    return asyncio.run(probe(dataclasses.replace(target, **overrides)))


def verdicts(result: ProbeResult) -> dict[str, bool | None]:
    return {v.version.value: v.supported for v in result.versions}


def version(result: ProbeResult, which: TLSVersion) -> VersionResult:
    found = result.version(which)
    assert found is not None
    return found


def leaf_der(certs: TestCerts) -> bytes:
    return certs.rsa.leaf_certificate().public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("low", "high", "expected", "negotiated"),
    [
        (V.TLSv1, V.TLSv1, {"1.0"}, None),
        (V.TLSv1_1, V.TLSv1_1, {"1.1"}, None),
        (V.TLSv1_2, V.TLSv1_2, {"1.2"}, "TLSv1.2"),
        (V.TLSv1_3, V.TLSv1_3, {"1.3"}, "TLSv1.3"),
        (V.TLSv1, V.TLSv1_1, {"1.0", "1.1"}, None),
        (V.TLSv1, V.TLSv1_3, {"1.0", "1.1", "1.2", "1.3"}, "TLSv1.3"),
    ],
    ids=["1.0", "1.1", "1.2", "1.3", "1.0+1.1", "1.0-1.3"],
)
def test_pinned_versions(
    certs: TestCerts, low: V, high: V, expected: set[str], negotiated: str | None
) -> None:
    with InprocServer(Behaviour(context=context(certs, low, high))) as server:
        result = run(server, certs)
    assert result.success, result.error_detail
    assert result.starttls_advertised is True
    assert verdicts(result) == {v: v in expected for v in ALL5}
    assert (result.negotiated.version if result.negotiated else None) == negotiated
    cert = result.certificate
    assert cert is not None
    assert cert.verified, cert.verify_detail
    assert "mail.test" in cert.sans
    assert len(cert.chain) == 2  # leaf and intermediate, read also from TLS 1.0-only servers
    assert cert.not_after == certs.rsa.not_after.replace(microsecond=0)


def test_tls13_only_server_sending_hello_retry_request(certs: TestCerts) -> None:
    ctx = context(certs, V.TLSv1_3, V.TLSv1_3)
    ctx.set_ecdh_curve("secp384r1")  # the hello's x25519 key share forces a retry request
    with InprocServer(Behaviour(context=ctx)) as server:
        result = run(server, certs)
    assert verdicts(result) == {v: v == "1.3" for v in ALL5}
    assert result.certificate is not None
    assert result.certificate.verified


def test_handwritten_hello_retry_request_counts_as_tls13() -> None:
    async def answer(client_hello: bytes, writer: asyncio.StreamWriter) -> None:
        if tlsbytes.offered_version(client_hello) == 0x0304:
            hrr = tlsbytes.server_hello(0x0304, 0x1301, HELLO_RETRY_REQUEST_RANDOM)
            writer.write(tlsbytes.record(22, hrr))
        else:
            writer.write(tlsbytes.alert(70))
        await writer.drain()

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, versions=(TLSVersion.TLS1_2, TLSVersion.TLS1_3))
    assert verdicts(result) == {"1.2": False, "1.3": True}
    assert version(result, TLSVersion.TLS1_2).detail == "alert protocol_version"


def test_sslv3_only_server(certs: TestCerts) -> None:
    """No local TLS library speaks SSLv3 any more: the verdict must come from our own bytes."""
    der = leaf_der(certs)

    async def answer(client_hello: bytes, writer: asyncio.StreamWriter) -> None:
        if tlsbytes.offered_version(client_hello) == 0x0300:
            writer.write(tlsbytes.flight(0x0300, (der,), cipher=0x000A))
        else:
            writer.write(tlsbytes.alert(40))
        await writer.drain()
        await asyncio.sleep(0.5)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, certs)
    assert verdicts(result) == {v: v == "ssl3" for v in ALL5}
    assert version(result, TLSVersion.SSL3).cipher == 0x000A
    assert result.negotiated is None
    assert result.certificate is not None
    assert result.certificate.verify_error is VerifyError.INCOMPLETE_CHAIN
    assert result.success


def test_sslv2_on_request() -> None:
    async def answer(client_hello: bytes, writer: asyncio.StreamWriter) -> None:
        if client_hello[0] & 0x80:
            body = b"\x04\x00\x01\x00\x02" + (4).to_bytes(2, "big") + (3).to_bytes(2, "big")
            body += (16).to_bytes(2, "big") + b"cert" + b"\x07\x00\xc0" + b"\x00" * 16
            writer.write((0x8000 | len(body)).to_bytes(2, "big") + body)
        else:
            writer.write(tlsbytes.alert(40))
        await writer.drain()

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, versions=(TLSVersion.SSL2, TLSVersion.TLS1_2))
    assert verdicts(result) == {"ssl2": True, "1.2": False}


def test_resets_count_as_refused_when_another_version_works(certs: TestCerts) -> None:
    """Windows Schannel resets on versions it refuses, without an alert."""
    der = leaf_der(certs)

    async def answer(client_hello: bytes, writer: asyncio.StreamWriter) -> None:
        if tlsbytes.offered_version(client_hello) == 0x0303:
            writer.write(tlsbytes.flight(0x0303, (der,), cipher=0xC030))
            await writer.drain()
            await asyncio.sleep(0.5)
        else:
            reset(writer)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, certs)
    assert result.success
    assert verdicts(result) == {v: v == "1.2" for v in ALL5}
    assert version(result, TLSVersion.TLS1_0).detail == "connection reset"


def test_resets_on_every_version_mean_tls_is_broken() -> None:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        reset(writer)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server)
    assert not result.success
    assert result.error is Reason.TLS_BROKEN
    assert verdicts(result) == dict.fromkeys(ALL5)


def test_reset_right_after_starttls_is_tls_broken() -> None:
    behaviour = Behaviour()
    with InprocServer(behaviour) as server:
        result = run(server)  # no context, no raw handler: the server closes after 220
    assert result.error is Reason.TLS_BROKEN
    assert verdicts(result) == dict.fromkeys(ALL5)


def test_server_trickling_its_answer_byte_by_byte(certs: TestCerts) -> None:
    der = leaf_der(certs)

    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        for byte in tlsbytes.flight(0x0303, (der,)):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0)
        await asyncio.sleep(0.5)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, certs, versions=(TLSVersion.TLS1_2,))
    assert result.success, result.error_detail
    assert verdicts(result) == {"1.2": True}
    assert result.certificate is not None


def test_server_stalling_after_its_server_hello_still_gives_a_verdict() -> None:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(tlsbytes.record(22, tlsbytes.server_hello(0x0303, 0xC02F)))
        await writer.drain()
        await asyncio.sleep(30)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, versions=(TLSVersion.TLS1_2,), timeout=2.0)
    assert verdicts(result) == {"1.2": True}
    assert result.duration < 4


def test_warning_alert_before_the_server_hello(certs: TestCerts) -> None:
    """Servers without a vhost for the SNI name warn with unrecognized_name, then go on."""
    der = leaf_der(certs)

    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(tlsbytes.record(21, b"\x01\x70") + tlsbytes.flight(0x0303, (der,)))
        await writer.drain()
        await asyncio.sleep(0.5)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, certs, versions=(TLSVersion.TLS1_2,))
    assert verdicts(result) == {"1.2": True}


def test_resets_with_a_working_default_handshake_are_refusals(certs: TestCerts) -> None:
    """Exchange-style: old hellos reset, yet an ordinary client connects fine."""
    behaviour = Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_3))
    with InprocServer(behaviour) as server:
        result = run(server, certs, versions=(TLSVersion.SSL3,))
    assert result.success, result.error_detail
    assert verdicts(result) == {"ssl3": False}
    assert result.negotiated is not None


def test_lower_version_flight_gives_the_chain(certs: TestCerts) -> None:
    """Only 1.2 and 1.3 asked, a TLS 1.0-only server: refused, and the certificate is read."""
    with InprocServer(Behaviour(context=context(certs, V.TLSv1, V.TLSv1))) as server:
        result = run(server, certs, versions=(TLSVersion.TLS1_2, TLSVersion.TLS1_3))
    assert verdicts(result) == {"1.2": False, "1.3": False}
    assert result.certificate is not None
    assert result.certificate.verified


def test_server_choosing_another_version_refuses_the_one_asked(certs: TestCerts) -> None:
    der = leaf_der(certs)

    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(tlsbytes.flight(0x0303, (der,)))
        await writer.drain()
        await asyncio.sleep(0.5)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, certs, versions=(TLSVersion.TLS1_0, TLSVersion.TLS1_2))
    assert verdicts(result) == {"1.0": False, "1.2": True}
    assert version(result, TLSVersion.TLS1_0).detail == "server chose TLSv1.2"


def test_plaintext_answer_to_client_hello_is_a_starttls_failure() -> None:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"454 4.7.0 TLS not available due to local problem\r\n")
        await writer.drain()

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server)
    assert result.error is Reason.STARTTLS_REJECTED
    assert "454 4.7.0" in result.error_detail
    assert verdicts(result) == dict.fromkeys(ALL5)


@pytest.mark.parametrize(
    ("behaviour", "reason", "words"),
    [
        (
            Behaviour(greeting=("421-mx.test busy", "421 4.3.2 try again later")),
            Reason.RATE_LIMITED,
            "421 4.3.2 try again later",
        ),
        (Behaviour(greeting=("554 5.7.1 no SMTP service here",)), Reason.GREETING_REJECTED, "554"),
        (Behaviour(ehlo_reply="550 5.7.1 go away"), Reason.EHLO_REJECTED, "550 5.7.1 go away"),
        (
            Behaviour(starttls_reply="454 4.7.0 TLS not available"),
            Reason.STARTTLS_REJECTED,
            "454 4.7.0",
        ),
        (Behaviour(greeting=("hello there",)), Reason.SMTP_PROTOCOL_ERROR, "hello there"),
        (Behaviour(greeting=("220-" + "x" * 9000, "220 ok")), Reason.SMTP_PROTOCOL_ERROR, "longer"),
        (
            Behaviour(greeting=(*["220-spam"] * 500, "220 ok")),
            Reason.SMTP_PROTOCOL_ERROR,
            "lines",
        ),
    ],
    ids=["421", "554", "ehlo-550", "starttls-454", "garbage", "long-line", "endless-reply"],
)
def test_smtp_failures_keep_the_servers_words(
    behaviour: Behaviour, reason: Reason, words: str
) -> None:
    with InprocServer(behaviour) as server:
        result = run(server)
    assert not result.success
    assert result.error is reason
    assert words in result.error_detail
    # A rejection is not a verdict: nothing is reported refused.
    assert verdicts(result) == dict.fromkeys(ALL5)
    # EHLO listed STARTTLS before the server refused to start it.
    assert result.starttls_advertised is (True if reason is Reason.STARTTLS_REJECTED else None)


def test_no_starttls_means_every_version_refused_and_success() -> None:
    with InprocServer(Behaviour(starttls=False)) as server:
        result = run(server, connections=2)
    assert result.success
    assert result.starttls_advertised is False
    assert verdicts(result) == dict.fromkeys(ALL5, False)
    assert result.certificate is None
    assert len(server.behaviour.connections) <= 3  # it stops early instead of trying them all


def test_delayed_multiline_greeting(certs: TestCerts) -> None:
    behaviour = Behaviour(
        greeting=("220-mx.test ESMTP please wait", "220-still here", "220 mx.test ready"),
        greeting_delay=0.6,
        context=context(certs, V.TLSv1_2, V.TLSv1_3),
    )
    with InprocServer(behaviour) as server:
        result = run(server, certs, connections=5)
    assert result.success, result.error_detail
    assert verdicts(result) == {v: v in ("1.2", "1.3") for v in ALL5}
    # Five connections at once: the greeting waits overlap instead of adding up.
    assert result.duration < 6 * 1.2


def test_silent_server_times_out_as_unknown() -> None:
    with InprocServer(Behaviour(silent=True)) as server:
        result = run(server, timeout=1.0)
    assert result.error is Reason.GREETING_TIMEOUT
    assert verdicts(result) == dict.fromkeys(ALL5)
    assert result.duration < 3


def test_server_silent_after_client_hello_is_unknown_not_refused() -> None:
    async def answer(_: bytes, _writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, timeout=1.5)
    assert not result.success
    assert result.error in (Reason.READ_TIMEOUT, Reason.PROBE_DEADLINE)
    assert verdicts(result) == dict.fromkeys(ALL5)
    assert result.duration < 4


def test_binary_garbage_after_client_hello() -> None:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x01\x02\x03\x04\x05\x06\x07\x08")
        await writer.drain()

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server)
    assert result.error is Reason.TLS_PROTOCOL_ERROR
    assert verdicts(result) == dict.fromkeys(ALL5)


def test_oversized_first_flight_costs_one_probe() -> None:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> None:
        messages = tlsbytes.server_hello(0x0303) + b"\x0b" + (2**23).to_bytes(3, "big")
        writer.write(tlsbytes.record(22, messages))
        for _record in range(40):
            writer.write(tlsbytes.record(22, b"\x00" * 16000))
        await writer.drain()
        await asyncio.sleep(1)

    with InprocServer(Behaviour(raw=answer)) as server:
        result = run(server, versions=(TLSVersion.TLS1_2,))
    assert not result.success
    assert result.error is Reason.TLS_PROTOCOL_ERROR


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = asyncio.run(probe(Target(host="127.0.0.1", port=port, timeout=5)))
    assert result.error is Reason.CONNECT_REFUSED
    assert verdicts(result) == dict.fromkeys(ALL5)


def test_unresolvable_host() -> None:
    result = asyncio.run(probe(Target(host="no-such-host.invalid", timeout=5)))
    assert result.error is Reason.RESOLVE_FAILED


def test_implicit_tls(certs: TestCerts) -> None:
    behaviour = Behaviour(implicit=True, context=context(certs, V.TLSv1_2, V.TLSv1_3))
    with InprocServer(behaviour) as server:
        result = run(server, certs, tls=TLSMode.IMPLICIT)
    assert result.success, result.error_detail
    assert result.starttls_advertised is None
    assert verdicts(result) == {v: v in ("1.2", "1.3") for v in ALL5}


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6(), reason="no ::1 on this machine")
def test_ipv6(certs: TestCerts) -> None:
    behaviour = Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_3))
    with InprocServer(behaviour, host="::1") as server:
        result = run(server, certs)
    assert result.success, result.error_detail
    assert result.target == f"[::1]:{server.port}"
    assert verdicts(result)["1.2"] is True


@pytest.mark.parametrize(
    ("which", "servername", "error"),
    [
        ("expired", "mail.test", VerifyError.EXPIRED),
        ("selfsigned", "mail.test", VerifyError.SELF_SIGNED),
        ("rsa", "wrong.example", VerifyError.HOSTNAME_MISMATCH),
        ("ecdsa", "mail.test", None),
    ],
)
def test_certificate_verdicts(
    certs: TestCerts, which: str, servername: str, error: VerifyError | None
) -> None:
    with InprocServer(Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_3, which))) as server:
        result = run(server, certs, servername=servername)
    assert result.success
    cert = result.certificate
    assert cert is not None
    assert cert.verify_error is error, cert.verify_detail
    assert cert.verified is (error is None)
    files = certs.all()[which]
    assert cert.not_after == files.not_after.replace(microsecond=0)
    if which == "ecdsa":
        assert (cert.key_type, cert.key_bits) == ("EC", 256)


def test_incomplete_chain(certs: TestCerts) -> None:
    ctx = tls_context(str(certs.rsa.leaf), str(certs.rsa.key), V.TLSv1_2, V.TLSv1_2)
    with InprocServer(Behaviour(context=ctx)) as server:
        result = run(server, certs)
    assert result.certificate is not None
    assert result.certificate.verify_error is VerifyError.INCOMPLETE_CHAIN


def test_untrusted_when_anchor_missing(certs: TestCerts) -> None:
    with InprocServer(Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_2))) as server:
        result = run(server)  # system store: does not hold the test CA
    assert result.certificate is not None
    assert result.certificate.verify_error in (
        VerifyError.UNTRUSTED,
        VerifyError.INCOMPLETE_CHAIN,
    )
    assert not result.certificate.verified


def test_next_address_when_the_first_refuses() -> None:
    """A host with a dead IPv6 address and a live IPv4 one is still probed, and every
    later connection goes straight to the address that answered."""
    with InprocServer(Behaviour()) as server:

        async def main() -> tuple[list[str], str | None]:
            dead = "::1" if _has_ipv6() else "127.0.0.2"
            endpoint = Endpoint([dead, "127.0.0.1"], server.port)
            peers = []
            for _attempt in range(2):
                _, writer = await endpoint.connect(Deadline.after(5))
                peers.append(writer.get_extra_info("peername")[0])
                writer.close()
            return peers, endpoint.working

        assert asyncio.run(main()) == (["127.0.0.1", "127.0.0.1"], "127.0.0.1")


def test_a_server_that_closes_tls_unasked_costs_nothing(certs: TestCerts) -> None:
    """A close_notify where the answer to QUIT should be ends the default client's
    connection: the probe finishes (in a thread, so that a hang fails instead of stopping
    the test run)."""
    context = tls_context(str(certs.rsa.cert), str(certs.rsa.key))
    results: list[ProbeResult] = []
    with InprocServer(Behaviour(context=context, close_after_tls=True)) as server:
        worker = threading.Thread(
            target=lambda: results.append(run(server, certs, versions=(TLSVersion.TLS1_2,))),
            daemon=True,
        )
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "the probe hung on the server's close_notify"
    (result,) = results
    assert result.negotiated is not None
    assert result.certificate is not None


def test_the_transcript_tells_each_connection_line_by_line(certs: TestCerts) -> None:
    """What the status page shows: the SMTP lines both ways, the ClientHello offered, the
    server's answer and the judgement, per connection, in time order."""
    from exporter.transcript import Kind, unpack

    with InprocServer(Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_3))) as server:
        result = run(server, certs)
    logs = {log.purpose: log for log in unpack(result.transcript)}
    assert set(logs) == {"resolve", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3",
                         "default client"}  # fmt: skip
    tls12 = [(line.kind, line.text) for line in logs["TLSv1.2"].lines]
    assert tls12[0] == (Kind.NOTE, f"connected to {server.host}:{server.port}")
    assert (Kind.SERVER, "220 inproc.test ESMTP") in tls12
    assert (Kind.CLIENT, "EHLO probe.test") in tls12
    assert (Kind.SERVER, "250-PIPELINING") in tls12
    assert (Kind.CLIENT, "STARTTLS") in tls12
    hello_line = next(text for kind, text in tls12 if text.startswith("ClientHello"))
    assert hello_line.startswith("ClientHello for TLSv1.2 only:")
    assert "SNI mail.test" in hello_line
    assert any(
        kind is Kind.SERVER and text.startswith("ServerHello TLSv1.2 TLS_")
        and "Certificate (2 certificates)" in text
        for kind, text in tls12
    )  # fmt: skip
    assert tls12[-1][1].startswith("accepted: TLS_")
    tls10 = [line.text for line in logs["TLSv1.0"].lines]
    assert tls10[-1] == "connection closed"  # this server closes without an alert
    default = [line.text for line in logs["default client"].lines]
    assert any(text.startswith("handshake done: TLSv1.3") for text in default)
    times = [line.at for line in logs["TLSv1.2"].lines]
    assert times == sorted(times)


def test_each_address_family_of_a_host_is_probed_on_its_own(certs: TestCerts) -> None:
    """IPv4 and IPv6 are two paths mail takes, often to different machines: here the IPv6
    address speaks only TLS 1.0 while the IPv4 one speaks TLS 1.2-1.3."""
    import socket as sockets

    from exporter.collector import add_result
    from exporter.transcript import unpack

    try:
        with sockets.socket(sockets.AF_INET6) as probe_socket:
            probe_socket.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    modern = Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_3))
    with (
        InprocServer(modern) as v4,
        InprocServer(Behaviour(context=context(certs, V.TLSv1, V.TLSv1)), host="::1", port=v4.port),
    ):
        target = Target(host="dual.test", port=v4.port, servername="mail.test",
                        ehlo_name="probe.test", ca_file=str(certs.ca_pem),
                        addresses=("127.0.0.1", "::1"))  # fmt: skip
        result = asyncio.run(probe(target))
    # The rest of the result is the first address's, as before.
    assert result.success
    assert verdicts(result) == {"ssl3": False, "1.0": False, "1.1": False, "1.2": True,
                                "1.3": True}  # fmt: skip
    first, second = result.addresses
    assert (first.address, second.address) == ("127.0.0.1", "::1")
    assert first.success
    assert second.success
    assert {v.version.value: v.supported for v in second.versions} == {
        "ssl3": False, "1.0": True, "1.1": False, "1.2": False, "1.3": False,
    }  # fmt: skip
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    add_result(lambda n, ls, v: samples.__setitem__((n, tuple(sorted(ls.items()))), v),
               target, result)  # fmt: skip
    name = "dual.test:" + str(target.port)
    assert samples[("smtp_tls_addresses_agree", (("target", name),))] == 0
    key = (("address", "::1"), ("target", name), ("version", "1.0"))
    assert samples[("smtp_tls_address_version_supported", key)] == 1
    key = (("address", "127.0.0.1"), ("target", name), ("version", "1.0"))
    assert samples[("smtp_tls_address_version_supported", key)] == 0
    purposes = {log.purpose for log in unpack(result.transcript)}
    assert {"TLSv1.0", "TLSv1.0 via ::1", "default client via ::1"} <= purposes


def test_a_host_with_one_family_gets_no_per_address_series(certs: TestCerts) -> None:
    with InprocServer(Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_3))) as server:
        result = run(server, certs, addresses=("127.0.0.1", "127.0.0.2"))
    assert result.success
    assert result.addresses == ()


def test_dane_is_checked_on_every_address_of_a_dual_stack_host(certs: TestCerts) -> None:
    """Each address of an MX host is a path mail takes: a DANE sender reaching the IPv6
    address, which presents another key, would not deliver."""
    import hashlib
    import socket as sockets

    from cryptography.hazmat.primitives.serialization import PublicFormat

    from exporter.collector import add_result
    from exporter.target import DaneExpectation

    try:
        with sockets.socket(sockets.AF_INET6) as probe_socket:
            probe_socket.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    leaf = certs.rsa.leaf_certificate()
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    expectation = DaneExpectation(((3, 1, 1, hashlib.sha256(spki).digest()),), ("mail.test",))
    rsa_server = Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_3))
    ecdsa_server = Behaviour(context=context(certs, V.TLSv1_2, V.TLSv1_3, "ecdsa"))
    with InprocServer(rsa_server) as v4, InprocServer(ecdsa_server, host="::1", port=v4.port):
        target = Target(host="dual.test", port=v4.port, servername="mail.test",
                        ehlo_name="probe.test", ca_file=str(certs.ca_pem),
                        addresses=("127.0.0.1", "::1"), dane=expectation)  # fmt: skip
        result = asyncio.run(probe(target))
    assert result.dane is not None
    assert result.dane.matched  # the first address, which the result describes
    assert [(a.address, a.dane_matched) for a in result.addresses] == [
        ("127.0.0.1", True),
        ("::1", False),
    ]
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    add_result(lambda n, ls, v: samples.__setitem__((n, tuple(sorted(ls.items()))), v),
               target, result)  # fmt: skip
    name = f"dual.test:{target.port}"
    assert samples[("smtp_tls_dane_tlsa_match", (("target", name),))] == 1
    key = (("address", "::1"), ("target", name))
    assert samples[("smtp_tls_address_dane_tlsa_match", key)] == 0
