"""The command line: every flag of the exporter and of `check`, and `main(argv)`.

`smtp-tls-exporter --config.file=FILE` runs the exporter (`exporter.app`);
`smtp-tls-exporter check HOST[:PORT]` probes one server once and prints the result.
Usage errors exit 2, a bad config file 1, never with a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence

from exporter import __version__, defaults
from exporter.config.values import (
    InvalidValue,
    read_dns_servers,
    read_domain,
    read_duration,
    read_versions,
)
from exporter.logs import LEVELS
from exporter.names import (
    ehlo_name_problem,
    is_ip_address,
    machine_ehlo_name,
    parse_host,
    parse_listen_address,
    parse_port,
    split_host_port,
)
from exporter.senders import BUILTIN_PROFILES, SenderProfile
from exporter.shard import Shard, parse_shard
from exporter.target import DEFAULT_VERSIONS, DnsSettings, MailDomain, Target, TLSMode, TLSVersion
from exporter.webconfig import WebConfig

__all__ = ["__version__", "main"]


# --- Flag values ---------------------------------------------------------------------------


def _versions(text: str) -> tuple[TLSVersion, ...]:
    """Versions as the config file takes them (`1.2`, `TLSv1.2`), comma-separated."""
    try:
        return read_versions([item.strip() for item in text.split(",")])
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(_problems(exc)) from None


def _seconds(text: str) -> float:
    """A duration as the config file takes it (`30s`, `1m30s`), or a number of seconds."""
    value: float | str
    try:
        value = float(text)
    except ValueError:
        value = text
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, got {text!r}")
    try:
        return read_duration(value, minimum=None)
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(_problems(exc)) from None


def _problems(exc: InvalidValue) -> str:
    return "; ".join(problem.message for problem in exc.problems)


def _ehlo_name(text: str) -> str:
    """A name EHLO may carry: a domain or an address literal, ASCII, no CR/LF."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    problem = ehlo_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


def _host(text: str) -> str:
    """A host name (Unicode taken as its A-labels) or an IP address; ValueError if neither."""
    if not text.strip():
        raise ValueError("must not be empty")
    host, problem = parse_host(text, unicode=True)
    if problem is not None:
        raise ValueError(f"{text!r} {problem}")
    return host


def _domain(text: str) -> str:
    try:
        return read_domain(text)
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(_value_problem(exc)) from None


def _port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dns_server(text: str) -> str:
    try:
        read_dns_servers([text])
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(_value_problem(exc)) from None
    return text.strip()


def _value_problem(exc: InvalidValue) -> str:
    return "; ".join(problem.message for problem in exc.problems)


def _senders(text: str) -> tuple[SenderProfile, ...]:
    if text.strip().lower() == "none":
        return ()
    found = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if name not in BUILTIN_PROFILES:
            known = ", ".join(BUILTIN_PROFILES)
            raise argparse.ArgumentTypeError(f"{name!r} is no built-in sender profile ({known})")
        found.append(BUILTIN_PROFILES[name])
    return tuple(found)


def _servername(text: str) -> str:
    """SNI and the name to match: a host name or an IP address, without a final dot."""
    try:
        return _host(text.rstrip(".") or text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _concurrency(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _listen_address(text: str) -> tuple[str | None, int]:
    try:
        return parse_listen_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --- The exporter ----------------------------------------------------------------------------


def exporter_parser() -> argparse.ArgumentParser:
    """Flags of the long-running exporter, named as in other Prometheus exporters."""
    parser = argparse.ArgumentParser(
        prog="smtp-tls-exporter",
        description="Prometheus exporter: which TLS versions SMTP servers accept, and "
        "when their certificates expire. `smtp-tls-exporter check HOST` probes once.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=defaults.DEFAULT_CONFIG_FILE,
        help=f"YAML file with the targets (default: {defaults.DEFAULT_CONFIG_FILE})",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the config file and exit (0 good, 1 bad)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        type=_listen_address,
        default=defaults.DEFAULT_LISTEN_ADDRESS,
        help=f"HOST:PORT to serve /metrics on (default {defaults.DEFAULT_LISTEN_ADDRESS})",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="TLS, client certificates, basic auth and headers for every endpoint, in the"
        " Prometheus exporter-toolkit's format (a file written for blackbox_exporter works);"
        " re-read on reload, its certificate files at each new connection when they change",
    )
    parser.add_argument("--log.level", dest="log_level", choices=list(LEVELS), default="info")
    parser.add_argument(
        "--log.format", dest="log_format", choices=["logfmt", "json"], default="logfmt"
    )
    parser.add_argument(
        "--probe.concurrency",
        dest="concurrency",
        type=_concurrency,
        metavar="N",
        help="the most probes running at once across all targets (default: as many as the"
        " open files limit allows, which is raised to its hard limit at start, up to 682"
        " for memory; fewer while the CPU is busy)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="probe only shard I (0 to N-1) of N: the targets whose name hashes to I, so N "
        "processes with the same config file split its targets (default: every target)",
    )
    parser.add_argument(
        "--storage.path",
        dest="storage_path",
        metavar="DIR",
        help="keep every target's last result in a database in DIR (made if missing), so a"
        " restart serves them at once and resumes each target's schedule instead of probing"
        " all at once; a damaged file is set aside and a new one started (default: results in"
        " memory only)",
    )
    parser.add_argument("--version", action="version", version=f"smtp-tls-exporter {__version__}")
    return parser


def missing_config(path: str) -> str:
    """No file where the exporter looked: say where, and both ways to give it one (a new
    user's first `docker run` without a mounted file ends here)."""
    return (
        f"{path}: file not found: give the config file with --config.file=FILE"
        f" (in a container, mount it at {os.path.abspath(path)})"
    )


def nothing_at(path: str) -> bool:
    """Whether there is no file at `path`. A loop of links, or a directory the exporter may
    not enter, is something else, and the error says what (os.path.exists says False)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def describe_web_config(config: WebConfig) -> str:
    """What a web config turns on, for `--config.check`: `TLS (client certificates:
    RequireAndVerifyClientCert), basic auth for 2 users`, and what is done differently."""
    parts = ["plain HTTP"]
    if config.tls is not None:
        parts = [f"TLS (client certificates: {config.tls.client_auth.value})"]
    if config.users:
        count = len(config.users)
        parts.append(f"basic auth for {count} user{'' if count == 1 else 's'}")
    if config.headers:
        parts.append(f"{len(config.headers)} headers")
    if config.rate_limit is not None:
        parts.append("a rate limit")
    return ", ".join(parts) + "".join(f"\n  note: {note}" for note in config.notes)


def run_exporter(argv: Sequence[str]) -> int:
    """Run the exporter until SIGTERM; exit 1 on a bad config file or listen address."""
    from exporter.app import describe_targets, serve
    from exporter.config import ConfigError, load_config
    from exporter.logs import setup
    from exporter.webconfig import WebConfig, WebConfigError, load_web_config

    args = exporter_parser().parse_args(list(argv))
    setup(args.log_level, args.log_format)
    web_config, web_problems = WebConfig(), ""
    if args.web_config_file is not None:
        try:
            web_config = load_web_config(args.web_config_file)
        except WebConfigError as exc:
            web_problems = str(exc)
    try:
        config = load_config(args.config_file)
    except ConfigError as exc:
        missing = nothing_at(args.config_file)
        print(missing_config(args.config_file) if missing else str(exc), file=sys.stderr)
        print(web_problems, file=sys.stderr, end="\n" if web_problems else "")
        return 1
    if web_problems:  # every problem of both files, before anything starts
        print(web_problems, file=sys.stderr)
        return 1
    if args.config_check:
        print(f"{args.config_file}: OK, {describe_targets(config, args.shard)}")
        if web_config.source is not None:
            print(f"{web_config.source}: OK, {describe_web_config(web_config)}")
        return 0
    return serve(
        args.config_file,
        config,
        args.listen,
        args.concurrency,
        args.shard,
        web_config,
        args.storage_path,
    )


# --- check -----------------------------------------------------------------------------------


def check_parser() -> argparse.ArgumentParser:
    """Flags of `check`: one probe of one server, with the settings a target may have."""
    parser = argparse.ArgumentParser(
        prog="smtp-tls-exporter check",
        description="Probe one SMTP server once: TLS versions, STARTTLS, certificate.",
    )
    parser.add_argument(
        "address",
        metavar="HOST[:PORT]",
        nargs="?",
        help=f"server to probe (port {defaults.DEFAULT_PORT}); a name with MX records but no"
        " address of its own is checked as a mail domain",
    )
    parser.add_argument(
        "--domain",
        type=_domain,
        help="a mail domain instead of HOST: its MX hosts, each probed on --port",
    )
    parser.add_argument(
        "--port",
        type=_port,
        help="the MX hosts' port with --domain, or HOST's when given without one"
        f" (default {defaults.DEFAULT_PORT})",
    )
    parser.add_argument(
        "--dns-server",
        dest="dns_servers",
        action="append",
        type=_dns_server,
        metavar="IP[:PORT]",
        help="name server for the MX and address look-ups (repeat for more; default: the"
        " system's resolver)",
    )
    parser.add_argument(
        "--tls",
        choices=[m.value for m in TLSMode],
        help=f"default: starttls, implicit on {defaults.IMPLICIT_PORT}",
    )
    parser.add_argument(
        "--servername",
        type=_servername,
        help="SNI and the name the certificate must match (default: HOST)",
    )
    parser.add_argument("--ca-file", help="PEM trust anchors (default: the system store)")
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=defaults.DEFAULT_TIMEOUT,
        help=f"deadline: a duration like 45s, or seconds ({defaults.DEFAULT_TIMEOUT:.0f}s)",
    )
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
        default=defaults.DEFAULT_CONNECTIONS,
        choices=range(1, defaults.MAX_CONNECTIONS + 1),
        metavar="N",
        help=f"connections at once to the server (1-{defaults.MAX_CONNECTIONS},"
        " default %(default)s)",
    )
    parser.add_argument(
        "--senders",
        type=_senders,
        default=tuple(BUILTIN_PROFILES.values()),
        metavar="NAMES",
        help="comma-separated sender profiles to try, one connection each (default: every"
        f" built-in one: {', '.join(BUILTIN_PROFILES)}; 'none' for none)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _check_target(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Target:
    """The target the flags describe; a bad one is a usage error (exit 2). With --domain,
    the template its MX hosts' targets are made from."""
    if args.domain:
        host, port = args.domain, args.port or defaults.DEFAULT_PORT
        if args.servername:
            parser.error("--servername: with --domain, each MX host's own name is used")
    else:
        host, port = _host_and_port(parser, args)
    implicit = port == defaults.IMPLICIT_PORT
    mode = TLSMode(args.tls) if args.tls else (TLSMode.IMPLICIT if implicit else TLSMode.STARTTLS)
    if args.ca_file:
        try:
            with open(args.ca_file, "rb"):
                pass
        except OSError as exc:
            parser.error(f"--ca-file {args.ca_file}: {exc.strerror}")
    return Target(
        host=host,
        port=port,
        tls=mode,
        servername=args.servername or "",
        ehlo_name=args.ehlo_name or machine_ehlo_name(),
        timeout=args.timeout,
        versions=args.versions,
        ca_file=args.ca_file,
        connections=args.connections,
        senders=args.senders,
    )


def _host_and_port(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, int]:
    try:
        host, port_text = split_host_port(args.address)
        port = parse_port(port_text) if port_text is not None else defaults.DEFAULT_PORT
        port = args.port or port
    except ValueError as exc:
        parser.error(str(exc))
    if not host:
        parser.error("HOST is empty")
    if args.address.startswith("[") and ":" not in host:
        parser.error(f"HOST {args.address!r}: brackets are only for IPv6 addresses")
    try:
        return _host(host), port
    except ValueError as exc:
        parser.error(f"HOST {exc}")


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.domain and args.address:
        parser.error("give HOST[:PORT] or --domain DOMAIN, not both")
    if not args.domain and not args.address:
        parser.error("give HOST[:PORT] to probe, or --domain DOMAIN")
    if args.port is not None and args.address and _bare_name(args.address) is None:
        parser.error("give the port once: HOST:PORT or --port")


def check(argv: Sequence[str]) -> int:
    """Run one probe (or one per MX host of a domain) and print it; 0 when every probe
    reached a verdict for everything (and the MX look-up answered), else 1."""
    parser = check_parser()
    args = parser.parse_args(argv)
    _check_usage(parser, args)
    target = _check_target(parser, args)
    dns = DnsSettings(servers=tuple(args.dns_servers or ()))
    try:
        text, success = asyncio.run(_check(target, dns, args))
    except Exception as exc:  # a bug: one line for the person, never a traceback
        why = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"smtp-tls-exporter check: internal error: {why}", file=sys.stderr)
        return 1
    _print(text)
    return 0 if success else 1


async def _check(target: Target, dns: DnsSettings, args: argparse.Namespace) -> tuple[str, bool]:
    """The report and whether it succeeded: of the server, or of the domain's MX hosts."""
    from exporter import domains
    from exporter.probe import probe
    from exporter.report import domain_to_json, domain_to_table, to_json, to_table

    domain_port = args.port or defaults.DEFAULT_PORT
    if (
        not args.domain
        and _bare_name(args.address)
        and await domains.is_mail_domain(target.host, dns)
    ):
        print(
            f"{target.host} has MX records but no address of its own: checked as a mail"
            f" domain (its MX hosts on port {domain_port})",
            file=sys.stderr,
        )
        args.domain = target.host
    if args.domain:
        template = dataclasses.replace(target, port=domain_port)
        found = await domains.check_domain(MailDomain(args.domain, template), dns, probe)
        text = json.dumps(domain_to_json(found)) if args.json else domain_to_table(found)
        return text, found.success
    if dns.servers:  # the host's addresses from the name servers given too
        target = dataclasses.replace(target, addresses=await domains.host_addresses(target, dns))
    result = await probe(target)
    text = json.dumps(to_json(target, result)) if args.json else to_table(target, result)
    return text, result.success


def _bare_name(address: str) -> bool | None:
    """True for a host name without a port (what a mail domain given as HOST looks like),
    False for an address without one, None when a port is given (or it does not parse)."""
    try:
        host, port = split_host_port(address)
    except ValueError:
        return None
    return None if port is not None else not is_ip_address(host.strip("[]"))


def _print(text: str) -> None:
    """Print to stdout; a reader that went away (`check ... | head`) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m exporter`."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "check":
            return check(args[1:])
        return run_exporter(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
