"""The plaintext SMTP dialogue up to STARTTLS, one connection at a time.

Replies are read line by line up to the final `NNN ` line: multi-line replies arrive in
pieces, and postscreen or greet_pause hold the last greeting line back for seconds.
Commands are never pipelined (Exim answers 554 to that). Every read is bounded in bytes
and lines, so a hostile server costs one probe and nothing more.

A server that says to come back later is rate-limiting the probe, which then learns nothing
about TLS: `rate_limited` (see `says_slow_down`), never a rejection and never a verdict.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Final

from exporter.probe.deadline import COMMAND_TIMEOUT, Deadline, ProbeFailure
from exporter.results import Reason
from exporter.transcript import ConnectionRecorder

#: The longest reply line accepted (RFC 5321 says 512; some servers exceed it). Connections
#: are opened with this as their reader's limit, so a longer line fails instead of buffering.
MAX_LINE: Final = 4096
#: The most lines one reply may have (EHLO lists a few dozen at most).
MAX_LINES: Final = 128

#: Words of a temporary reply that mean "too much from you, later": too many connections,
#: rate limits, throttling, a busy server, "try again later".
_SLOW_DOWN: Final = re.compile(
    r"too many|\brate\b|\bratelimit|\blimit|exceeded|throttl|slow down|busy|congest|overload"
    r"|(?:try|retry|come back)(?: again)? later",
    re.IGNORECASE,
)
#: Words that make a temporary reply about something else, which waiting does not mend: TLS
#: itself (a 454 to STARTTLS), or this client being refused (no reverse DNS, a block list).
_SOMETHING_ELSE: Final = re.compile(
    r"\b(?:tls|ssl|starttls)\b|certificat|reject|denied|not allowed|block|black ?list"
    r"|hostname|reverse|\bptr\b|\bdns",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply as one line, for failure reasons."""
        return " / ".join(f"{self.code} {line}".strip() for line in self.lines)[:512]

    @property
    def says_slow_down(self) -> bool:
        """True when the server rate-limits this client rather than refusing it: a 421
        (RFC 5321: service not available, closing the channel: come back later), or another
        4xx whose words speak of too many connections, a rate, a limit or later, and do not
        name TLS or a refusal of this client. A 5xx is permanent: never a rate limit."""
        if self.code == 421:
            return True
        if not 400 <= self.code < 500:
            return False
        words = " ".join(self.lines)
        return bool(_SLOW_DOWN.search(words)) and not _SOMETHING_ELSE.search(words)


def _refusal(
    reply: Reply, reason: Reason, *, starttls_advertised: bool | None = None
) -> ProbeFailure:
    """The failure for a reply other than the one expected: a rate limit, else `reason`."""
    if reply.says_slow_down:
        reason = Reason.RATE_LIMITED
    return ProbeFailure(reason, reply.text, starttls_advertised=starttls_advertised)


async def _read_reply(
    reader: asyncio.StreamReader, timeout: float, log: ConnectionRecorder
) -> Reply:
    """One complete (possibly multi-line) SMTP reply, within `timeout` seconds."""
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            line = await _read_line(reader)
            text = printable(line[4:])
            log.server(f"{line[:4].decode('ascii')}{text}")
            lines.append(text)
            if len(lines) > MAX_LINES:
                raise ProbeFailure(Reason.SMTP_PROTOCOL_ERROR, f"reply of over {MAX_LINES} lines")
            if line[3:4] != b"-":
                return Reply(int(line[:3]), tuple(lines))


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    """One reply line without its line end; anything but `NNN`, `NNN text` or `NNN-text` fails."""
    try:
        raw = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProbeFailure(
                Reason.CONNECTION_CLOSED, printable(exc.partial) or "closed mid-reply"
            ) from None
        raise ProbeFailure(Reason.CONNECTION_CLOSED, "closed by the server") from None
    except asyncio.LimitOverrunError:
        raise ProbeFailure(
            Reason.SMTP_PROTOCOL_ERROR, f"reply line longer than {MAX_LINE} bytes"
        ) from None
    except OSError as exc:  # reset, unreachable, ...
        raise ProbeFailure.from_os_error(Reason.CONNECTION_CLOSED, exc) from None
    line = raw.rstrip(b"\r\n")
    if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3:4] not in b" -"):
        raise ProbeFailure(Reason.SMTP_PROTOCOL_ERROR, f"not an SMTP reply: {printable(line)!r}")
    return line


def printable(data: bytes) -> str:
    """Server bytes as printable text, for failure reasons and labels."""
    text = data[:2048].decode("utf-8", "replace")
    if not text.isprintable():  # rare: only then character by character
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text.strip()[:512]


async def _command(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    line: str,
    deadline: Deadline,
    log: ConnectionRecorder,
) -> Reply:
    log.client(line)
    writer.write(line.encode("ascii") + b"\r\n")
    with deadline.phase(Reason.READ_TIMEOUT):
        try:
            await writer.drain()
        except OSError as exc:
            raise ProbeFailure.from_os_error(Reason.CONNECTION_CLOSED, exc) from None
        return await _read_reply(reader, deadline.budget(COMMAND_TIMEOUT), log)


async def starttls(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ehlo_name: str,
    deadline: Deadline,
    log: ConnectionRecorder,
) -> bool:
    """Greeting, EHLO and (when advertised) STARTTLS; True when the socket is TLS-ready,
    False when EHLO did not list STARTTLS (the session has said QUIT then).

    The greeting may take as long as the whole deadline allows: greet-pause delays of 15-20 s
    are normal on busy MX hosts.
    """
    with deadline.phase(Reason.GREETING_TIMEOUT):
        greeting = await _read_reply(reader, deadline.budget(), log)
    if greeting.code != 220:
        raise _refusal(greeting, Reason.GREETING_REJECTED)
    ehlo = await _command(reader, writer, f"EHLO {ehlo_name}", deadline, log)
    if ehlo.code != 250:
        raise _refusal(ehlo, Reason.EHLO_REJECTED)
    advertised = any(
        line.split()[0].upper() == "STARTTLS" for line in ehlo.lines[1:] if line.split()
    )
    if not advertised:
        log.note("EHLO did not list STARTTLS")
        await quit_politely(reader, writer, deadline, log)
        return False
    answer = await _command(reader, writer, "STARTTLS", deadline, log)
    if answer.code != 220:
        raise _refusal(answer, Reason.STARTTLS_REJECTED, starttls_advertised=True)
    return True


async def quit_politely(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    deadline: Deadline,
    log: ConnectionRecorder,
) -> None:
    """Say QUIT and wait briefly for the answer; failures here do not matter."""
    try:
        log.client("QUIT")
        writer.write(b"QUIT\r\n")
        async with asyncio.timeout(deadline.budget(2.0)):
            await writer.drain()
            await _read_reply(reader, 2.0, log)
    except (ProbeFailure, OSError, TimeoutError):
        pass
