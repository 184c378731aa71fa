"""A probe's transcript: recorded in order, bounded, packed small, and unpacked safely."""

from __future__ import annotations

import zlib

from exporter.transcript import MAX_CONNECTIONS, MAX_LINES, MAX_TEXT, Kind, Recorder, unpack


def test_lines_come_back_in_order_with_their_kind_and_timing() -> None:
    recorder = Recorder()
    first = recorder.connection("TLSv1.2")
    second = recorder.connection("default client")
    first.note("connected to 127.0.0.1:25")
    first.server("220 mx.example.org ESMTP")
    second.client("EHLO probe.example")
    first.client("EHLO probe.example")
    logs = unpack(recorder.pack())
    assert [log.purpose for log in logs] == ["TLSv1.2", "default client"]
    assert [(line.kind, line.text) for line in logs[0].lines] == [
        (Kind.NOTE, "connected to 127.0.0.1:25"),
        (Kind.SERVER, "220 mx.example.org ESMTP"),
        (Kind.CLIENT, "EHLO probe.example"),
    ]
    times = [line.at for line in logs[0].lines]
    assert times == sorted(times)
    assert times[0] >= 0


def test_a_flood_is_cut_and_says_so() -> None:
    recorder = Recorder()
    connection = recorder.connection("TLSv1.2")
    for number in range(MAX_LINES + 40):
        connection.server(f"250-{number} " + "x" * 2 * MAX_TEXT)
    for _ in range(MAX_CONNECTIONS + 5):
        recorder.connection("more").note("opened")
    packed = recorder.pack()
    logs = unpack(packed)
    assert len(logs) == MAX_CONNECTIONS
    lines = logs[0].lines
    assert len(lines) == MAX_LINES + 1
    assert all(len(line.text) <= MAX_TEXT for line in lines)
    assert lines[-1] == lines[-1].__class__(lines[-1].at, Kind.NOTE, "40 more lines not kept")
    assert len(packed) < 16 * 1024


def test_unreadable_or_hostile_packing_gives_nothing() -> None:
    assert unpack(b"") == ()
    assert unpack(b"not zlib") == ()
    assert unpack(zlib.compress(b'{"not": "a list"}')) == ()
    assert unpack(zlib.compress(b"[" * 100_000)) == ()
    bomb = zlib.compress(b"[" + b" " * (64 << 20) + b"]")
    assert unpack(bomb) == ()
