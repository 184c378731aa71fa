"""The SMTP dialogue against servers that send anything: only ProbeFailure may come out,
in bounded time, lines and bytes, and well-formed replies read as they were written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from exporter.probe import smtp
from exporter.probe.deadline import Deadline, ProbeFailure
from exporter.results import Reason
from exporter.transcript import MAX_LINES as TRANSCRIPT_LINES
from exporter.transcript import MAX_TEXT, ConnectionRecorder
from tests.support.scripted import chunked, scripted

#: Far above what a scripted server needs, far below the probe's deadline.
QUICK = 3.0


@dataclass(frozen=True)
class Dialogue:
    """How `smtp.starttls` ended: True/False, or the failure."""

    ready: bool | None
    failure: ProbeFailure | None
    rows: list[tuple[float, str, str]]


async def _dialogue(chunks: Sequence[bytes], reset: bool = False) -> Dialogue:
    log = ConnectionRecorder(time.monotonic())
    async with scripted(chunks, reset=reset) as (reader, writer):
        try:
            ready = await smtp.starttls(reader, writer, "probe.test", Deadline.after(10), log)
        except ProbeFailure as failure:
            return Dialogue(None, failure, log.rows())
    return Dialogue(ready, None, log.rows())


def run_dialogue(chunks: Sequence[bytes], reset: bool = False) -> Dialogue:
    """The dialogue with a server sending `chunks`; only ProbeFailure may escape it."""
    started = time.monotonic()
    ended = asyncio.run(_dialogue(chunks, reset))
    elapsed = time.monotonic() - started
    assert elapsed < QUICK, f"{elapsed:.1f}s"
    assert len(ended.rows) <= TRANSCRIPT_LINES + 1
    assert all(len(text) <= MAX_TEXT for _, _, text in ended.rows)
    if ended.failure is not None:
        assert len(ended.failure.detail) <= 1024
    return ended


sizes = st.lists(st.integers(1, 64), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), sizes, st.booleans())
def test_any_bytes_end_in_an_answer_or_a_probe_failure(
    data: bytes, cuts: list[int], reset: bool
) -> None:
    run_dialogue(chunked(data, cuts), reset)


# --- well-formed replies read as written ------------------------------------------------

#: Reply text: any bytes but line ends, as servers send them (8-bit included).
texts = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
codes = st.sampled_from([220, 250, 421, 454, 500, 554]) | st.integers(100, 599)


def encode_reply(code: int, lines: Sequence[bytes]) -> bytes:
    parts = [
        str(code).encode() + (b"-" if i < len(lines) - 1 else b" ") + text + b"\r\n"
        for i, text in enumerate(lines)
    ]
    return b"".join(parts)


replies = st.tuples(codes, st.lists(texts, min_size=1, max_size=5))
ehlo_lines = st.lists(
    st.sampled_from([b"STARTTLS", b"starttls", b"PIPELINING", b"SIZE 1000", b"8BITMIME", b""])
    | texts,
    max_size=6,
)


def refusal(code: int, lines: Sequence[bytes], otherwise: Reason) -> Reason:
    """The reason a reply other than the expected one fails with: a rate limit (421, or a
    4xx that says so) or `otherwise`."""
    reply = smtp.Reply(code, tuple(smtp.printable(line) for line in lines))
    return Reason.RATE_LIMITED if reply.says_slow_down else otherwise


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies, codes, ehlo_lines, replies, sizes)
def test_well_formed_replies_decide_as_written(
    greeting: tuple[int, list[bytes]],
    ehlo_code: int,
    extensions: list[bytes],
    answer: tuple[int, list[bytes]],
    cuts: list[int],
) -> None:
    ehlo = encode_reply(ehlo_code, [b"mx.test greets you", *extensions])
    data = encode_reply(*greeting) + ehlo + encode_reply(*answer)
    ended = run_dialogue(chunked(data, cuts))
    advertised = any(
        [word.upper() for word in smtp.printable(line).split()[:1]] == ["STARTTLS"]
        for line in extensions
    )
    if greeting[0] != 220:
        expected: bool | Reason = refusal(*greeting, Reason.GREETING_REJECTED)
    elif ehlo_code != 250:
        expected = refusal(ehlo_code, [b"mx.test greets you", *extensions], Reason.EHLO_REJECTED)
    elif not advertised:
        expected = False
    elif answer[0] != 220:
        expected = refusal(*answer, Reason.STARTTLS_REJECTED)
    else:
        expected = True
    got = ended.ready if ended.failure is None else ended.failure.reason
    assert got == expected, ended


@settings(max_examples=50, deadline=None)
@given(replies)
def test_a_rejection_quotes_the_server_printably(greeting: tuple[int, list[bytes]]) -> None:
    assume(greeting[0] != 220)
    ended = run_dialogue([encode_reply(*greeting)])
    assert ended.failure is not None
    assert ended.failure.detail.startswith(str(greeting[0]))
    assert ended.failure.detail.isprintable()
    assert len(ended.failure.detail) <= 512


# --- bounds -----------------------------------------------------------------------------


def test_a_line_over_the_limit_fails_without_buffering_it() -> None:
    ended = run_dialogue([b"220 " + b"x" * (smtp.MAX_LINE * 64) + b"\r\n"])
    assert ended.failure is not None
    assert ended.failure.reason is Reason.SMTP_PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("lines", "ok"), [(smtp.MAX_LINES, True), (smtp.MAX_LINES + 1, False), (100_000, False)]
)
def test_replies_are_bounded_in_lines(lines: int, ok: bool) -> None:
    greeting = b"220-mx.test\r\n" * (lines - 1) + b"220 mx.test\r\n"
    ended = run_dialogue([greeting, b"554 no\r\n"])
    assert ended.failure is not None
    expected = Reason.EHLO_REJECTED if ok else Reason.SMTP_PROTOCOL_ERROR
    assert ended.failure.reason is expected


@pytest.mark.parametrize(
    "data",
    [b"", b"220", b"220 partial", b"2", b"\r\n", b"abc\r\n", b"220-only continuation\r\n"],
)
def test_short_and_broken_streams_fail_cleanly(data: bytes) -> None:
    ended = run_dialogue([data])
    assert ended.failure is not None
    assert ended.failure.reason in (Reason.CONNECTION_CLOSED, Reason.SMTP_PROTOCOL_ERROR)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=5000))
def test_printable_is_bounded_and_printable(data: bytes) -> None:
    text = smtp.printable(data)
    assert len(text) <= 512
    assert text.isprintable()
    assert text == text.strip()
