"""Names on the wire and in labels: host names, IP literals, HOST:PORT, EHLO names, label names.

One place for these rules, used by the config file, the command line and the probe, so a
name that one accepts the others accept too.
"""

from __future__ import annotations

import ipaddress
import re
import socket

#: Label names the exporter sets itself, and the two Prometheus sets on every scrape.
RESERVED_LABELS: frozenset[str] = frozenset(
    {
        "target",
        "version",
        "reason",
        "detail",
        "cipher",
        "subject",
        "issuer",
        "serial",
        "fingerprint_sha256",
        "key_type",
        "key_bits",
        "signature_algorithm",
        "sans",
        "python_version",
        "openssl_version",
        "job",
        "instance",
    }
)


def machine_ehlo_name() -> str:
    """This machine's FQDN, or "localhost" when it has none.

    `socket.getfqdn()` answers with the bare host name when the resolver knows no domain
    (common in containers); a name without a dot, or one that is not a valid host name,
    gives "localhost" instead: set `ehlo_name` to send a real name.
    """
    name = socket.getfqdn().rstrip(".")
    if "." not in name or ehlo_name_problem(name) is not None:
        return "localhost"
    return name


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def label_name_problem(name: str) -> str | None:
    """Why `name` cannot be a label name of the target's own, or None."""
    if not _LABEL_NAME.fullmatch(name):
        return "is not a valid label name (letters, digits and _, not starting with a digit)"
    if name.startswith("__"):
        return "label names starting with __ are reserved for Prometheus"
    if name in RESERVED_LABELS:
        return "is a label the exporter or Prometheus sets itself; choose another name"
    return None


_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_LDH_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_host(value: str) -> tuple[str, str | None]:
    """(host, problem): a DNS name or IP address, with brackets around IPv6 removed."""
    if "://" in value:
        return value, "is a URL; give only the host name, e.g. 'mx.example.org'"
    if value.startswith("["):
        inner, close, rest = value[1:].partition("]")
        if not close:
            return value, "has '[' without ']'"
        if re.fullmatch(r":[0-9]+", rest):
            return value, "looks like [address]:port; put the port under `port`"
        if rest:
            return value, "has text after ']'"
        if is_ipv6(inner):
            return inner, None
        if is_ipv4(inner):
            return value, "has brackets, which are only for IPv6 addresses"
        return value, "is not an IPv6 address inside [ ]"
    if ":" in value:
        if is_ipv6(value):
            return value, None
        head, _, tail = value.rpartition(":")
        if ":" not in head and re.fullmatch(r"[0-9]+", tail):
            return value, "looks like host:port; put the port under `port`"
        return value, "is not a valid IPv6 address"
    if re.fullmatch(r"[0-9.]+", value):
        return value, None if is_ipv4(value) else "is not a valid IPv4 address"
    return value, hostname_problem(value, _HOST_LABEL)


def hostname_problem(name: str, label_pattern: re.Pattern[str]) -> str | None:
    if not name.isascii():
        try:
            ascii_name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return "is not a valid host name"
        return f"is not ASCII; write it as {ascii_name!r}"
    for char in name:
        if char.isspace():
            return "contains white space"
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(name.rstrip(".")) > 253:
        return "is longer than 253 characters"
    for label in labels:
        if not label:
            return "has an empty part (two dots in a row, or a leading dot)"
        if len(label) > 63:
            return "has a part longer than 63 characters"
        if not label_pattern.fullmatch(label):
            bad = [c for c in label if not (c.isalnum() or c in "-_")]
            if bad:
                return f"contains {bad[0]!r}, which is not allowed in a host name"
            if "_" in label and label_pattern is _LDH_LABEL:
                return "contains '_', which is not allowed here"
            return "has a part that starts or ends with '-'"
    if re.fullmatch(r"[0-9]+", labels[-1]):
        return "ends in an all-digit part, so it is neither a host name nor an IPv4 address"
    return None


def ehlo_name_problem(value: str) -> str | None:
    """Why `value` cannot follow EHLO (RFC 5321: a domain or an address literal), or None."""
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        if inner[:5].lower() == "ipv6:" and "%" not in inner and is_ipv6(inner[5:]):
            return None
        if is_ipv4(inner):
            return None
        return "is not an address literal like [192.0.2.1] or [IPv6:2001:db8::1]"
    if is_ipv4(value):
        return f"is an address; EHLO needs it in brackets: '[{value}]'"
    if is_ipv6(value):
        return f"is an address; EHLO needs it as '[IPv6:{value}]'"
    if value.endswith("."):
        return "must not end with a dot"
    return hostname_problem(value, _LDH_LABEL)


def is_ip_address(text: str) -> bool:
    """True for an IPv4 or IPv6 address (no brackets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def sni_name(servername: str) -> str | None:
    """The name for SNI: none for an IP address (RFC 6066 allows only host names)."""
    name = servername.strip("[]")
    if is_ip_address(name):
        return None
    return name.rstrip(".") or None


def format_address(host: str, port: int) -> str:
    """`host:port`, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_port(text: str, *, allow_zero: bool = False) -> int:
    """A port number from text; ValueError names the problem."""
    low = 0 if allow_zero else 1
    if not text.isdigit() or not low <= int(text) <= 65535:
        raise ValueError(f"port must be a number from {low} to 65535, got {text!r}")
    return int(text)


def split_host_port(text: str) -> tuple[str, str | None]:
    """(host, port text or None) from `host`, `host:25`, `[2001:db8::1]:25`, `:9025` or a bare
    IPv6 literal; ValueError for brackets that do not close."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: expected [IPv6]:PORT")
        return host, rest[1:] if rest else None
    if text.count(":") > 1:
        if not is_ipv6(text):
            raise ValueError(f"bad address {text!r}: an IPv6 address with a port needs brackets")
        return text, None
    host, sep, port = text.partition(":")
    return host, port if sep else None


def parse_listen_address(text: str) -> tuple[str | None, int]:
    """(host or None for every address, port) from `:9025`, `0.0.0.0:9025`, `[::1]:9025` or
    `localhost:9025`; ValueError names the problem."""
    host, port = split_host_port(text)
    if port is None:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host or None, parse_port(port, allow_zero=True)
