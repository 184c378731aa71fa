"""Command line: `smtp-tls-exporter --config.file=...` runs the exporter, `check` probes once."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
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
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


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
        "--servername", help="SNI and the name the certificate must match (default: HOST)"
    )
    parser.add_argument("--ca-file", help="PEM trust anchors (default: the system store)")
    parser.add_argument("--timeout", type=_positive, default=30.0, help="deadline in seconds (30)")
    parser.add_argument("--ehlo-name", help="name sent in EHLO (default: this machine's FQDN)")
    parser.add_argument(
        "--versions",
        type=_versions,
        default=DEFAULT_VERSIONS,
        help="comma-separated versions to test (default: ssl3,1.0,1.1,1.2,1.3; ssl2 on request)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=3,
        choices=range(1, 11),
        metavar="N",
        help="connections at once to the server (1-10, default 3)",
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
    result = asyncio.run(probe(target))
    if args.json:
        print(json.dumps(to_json(target, result), indent=None))
    else:
        print(to_table(target, result))
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
