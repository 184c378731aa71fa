"""Command line: `smtp-tls-exporter --config.file=...` runs the exporter, `check` probes once."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import sys
from collections.abc import Sequence

from exporter import __version__
from exporter.target import DEFAULT_VERSIONS, Target, TLSMode, TLSVersion


def _split_host_port(text: str) -> tuple[str, int | None]:
    """`host`, `host:25`, `[2001:db8::1]:25` or a bare IPv6 literal."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: expected [IPv6]:PORT")
        return host, _port(rest[1:]) if rest else None
    if text.count(":") > 1:
        ipaddress.ip_address(text)  # a bare IPv6 literal, no port
        return text, None
    host, sep, port = text.partition(":")
    return host, _port(port) if sep else None


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, got {text!r}")
    return int(text)


def _versions(text: str) -> tuple[TLSVersion, ...]:
    chosen = []
    for item in text.split(","):
        try:
            chosen.append(TLSVersion(item.strip()))
        except ValueError:
            valid = ", ".join(v.value for v in TLSVersion)
            raise argparse.ArgumentTypeError(f"unknown version {item!r} (valid: {valid})") from None
    return tuple(chosen)


def _positive(text: str) -> float:
    from exporter.config import MAX_DURATION

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds greater than 0, got {text!r}"
        )
    if value > MAX_DURATION:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_DURATION:.0f} seconds (one year)")
    return value


def _ehlo_name(text: str) -> str:
    """A name EHLO may carry: a domain or an address literal, ASCII, no CR/LF."""
    from exporter.config import _ehlo_problem

    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    problem = _ehlo_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _host_problem(text: str) -> str | None:
    """Why `text` is neither a host name nor an IP address, or None."""
    from exporter.config import _parse_host

    if not text.strip():
        return "must not be empty"
    _, problem = _parse_host(text)
    return None if problem is None else f"{text!r} {problem}"


def _servername(text: str) -> str:
    """SNI and the name to match: a host name or an IP address, without a final dot."""
    name = text.rstrip(".") or text
    problem = _host_problem(name)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return name


def _check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtp-tls-exporter check",
        description="Probe one SMTP server once: TLS versions, STARTTLS, certificate.",
    )
    parser.add_argument("address", metavar="HOST[:PORT]", help="server to probe (port 25)")
    parser.add_argument(
        "--tls", choices=[m.value for m in TLSMode], help="default: starttls, implicit on 465"
    )
    parser.add_argument(
        "--servername",
        type=_servername,
        help="SNI and the name the certificate must match (default: HOST)",
    )
    parser.add_argument("--ca-file", help="PEM trust anchors (default: the system store)")
    parser.add_argument("--timeout", type=_positive, default=30.0, help="deadline in seconds (30)")
    parser.add_argument(
        "--ehlo-name",
        type=_ehlo_name,
        help="name sent in EHLO (default: this machine's FQDN)",
    )
    parser.add_argument(
        "--versions",
        type=_versions,
        default=DEFAULT_VERSIONS,
        help="comma-separated versions to test (default: ssl3,1.0,1.1,1.2,1.3; ssl2 on request)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=Target.__dataclass_fields__["connections"].default,
        choices=range(1, 11),
        metavar="N",
        help="connections at once to the server (1-10, default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def check(argv: Sequence[str]) -> int:
    """Run one probe and print it; 0 when it reached a verdict for everything, else 1."""
    from exporter.config import machine_ehlo_name
    from exporter.probe import probe
    from exporter.report import to_json, to_table

    parser = _check_parser()
    args = parser.parse_args(argv)
    try:
        host, port = _split_host_port(args.address)
    except ValueError as exc:
        parser.error(str(exc))
    if not host:
        parser.error("HOST is empty")
    if args.address.startswith("[") and ":" not in host:
        parser.error(f"HOST {args.address!r}: brackets are only for IPv6 addresses")
    problem = _host_problem(host)
    if problem is not None:
        parser.error(f"HOST {problem}")
    port = port or 25
    mode = (
        TLSMode(args.tls) if args.tls else (TLSMode.IMPLICIT if port == 465 else TLSMode.STARTTLS)
    )
    if args.ca_file:
        try:
            with open(args.ca_file, "rb"):
                pass
        except OSError as exc:
            parser.error(f"--ca-file {args.ca_file}: {exc.strerror}")
    target = Target(
        host=host,
        port=port,
        tls=mode,
        servername=args.servername or "",
        ehlo_name=args.ehlo_name or machine_ehlo_name(),
        timeout=args.timeout,
        versions=args.versions,
        ca_file=args.ca_file,
        connections=args.connections,
    )
    try:
        result = asyncio.run(probe(target))
        text = (
            json.dumps(to_json(target, result), indent=None)
            if args.json
            else to_table(target, result)
        )
    except Exception as exc:  # a bug: one line for the person, never a traceback
        why = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"smtp-tls-exporter check: internal error: {why}", file=sys.stderr)
        return 1
    print(text)
    return 0 if result.success else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m exporter`."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "check":
            return check(args[1:])
        from exporter.server import run

        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["__version__", "main"]
