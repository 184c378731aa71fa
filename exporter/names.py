"""Names on the wire and in labels: host names, IP literals, HOST:PORT, EHLO names, label names.

One place for these rules, used by the config file, the command line and the probe, so a
name that one accepts the others accept too.
"""

from __future__ import annotations

import ipaddress
import re
import socket

import idna

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
        # Mail domains' series.
        "domain",
        "preference",
        "status",
        "address",
        # Mail transport policy's series.
        "result",
        "id",
        "mode",
        # Senders' series.
        "profile",
        "failure",
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
_IPV4_LIKE = re.compile(r"[0-9.]+")
_CODE_POINT = re.compile(r"U\+([0-9A-F]{4,6})")


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


def parse_host(value: str, *, unicode: bool = False) -> tuple[str, str | None]:
    """(host, problem): a DNS name or IP address, with brackets around IPv6 removed.

    With `unicode`, a name in Unicode (`mx.bücher.example`) is taken and returned as its
    A-labels (`mx.xn--bcher-kva.example`), the form DNS and SNI carry; without, it is a
    problem that names the A-label form to write instead.
    """
    if "://" in value:
        return value, "is a URL; give only the host name, e.g. 'mx.example.org'"
    if value.startswith("["):
        return _bracketed_host(value)
    if ":" in value:
        return value, _colon_host_problem(value)
    if _IPV4_LIKE.fullmatch(value):
        return value, None if is_ipv4(value) else "is not a valid IPv4 address"
    if unicode and not value.isascii():
        name, problem = to_a_labels(value)
        if problem is None:
            problem = hostname_problem(name)
        return (value, problem) if problem else (name, None)
    return value, hostname_problem(value)


def _bracketed_host(value: str) -> tuple[str, str | None]:
    """An IPv6 literal in brackets (`[2001:db8::1]`), unwrapped."""
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


def _colon_host_problem(value: str) -> str | None:
    """A host with a colon is an IPv6 address, or a mistake worth naming."""
    if is_ipv6(value):
        return None
    head, _, tail = value.rpartition(":")
    if ":" not in head and re.fullmatch(r"[0-9]+", tail):
        return "looks like host:port; put the port under `port`"
    return "is not a valid IPv6 address"


def to_a_labels(name: str) -> tuple[str, str | None]:
    """(`name` in ASCII, problem): every Unicode label as its A-label (`xn--...`).

    IDNA 2008 after the UTS #46 mapping (lower case, full-width dots), as browsers and
    curl do; Python's own `idna` codec implements the older IDNA 2003, which maps `ß` to
    `ss` and takes symbols that registries no longer accept. ASCII labels pass unchecked
    (lower-cased), so an A-label written by hand reaches DNS exactly as written.
    """
    if any(char.isspace() for char in name):
        return name, "contains white space"
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
        labels = [
            label if label.isascii() else idna.alabel(label).decode("ascii")
            for label in mapped.split(".")
        ]
    except idna.IDNAError as exc:
        return name, _idna_problem(name, exc)
    return ".".join(labels), None


def _idna_problem(name: str, exc: idna.IDNAError) -> str:
    """What IDNA 2008 refuses in `name`, with the IDNA 2003 A-label where there is one."""
    code = _CODE_POINT.search(str(exc))
    if isinstance(exc, idna.InvalidCodepoint) and code:
        why = f"contains {chr(int(code[1], 16))!r} ({code[0]}), which IDNA 2008 does not allow"
    elif isinstance(exc, idna.InvalidCodepointContext) and code:
        why = f"contains {code[0]} where IDNA 2008 does not allow it"
    elif isinstance(exc, idna.IDNABidiError):
        why = "mixes right-to-left and left-to-right text as IDNA 2008 does not allow"
    else:
        why = f"is not a valid internationalized host name ({exc})"
    try:
        legacy = name.encode("idna").decode("ascii")
    except UnicodeError:
        return why
    if "xn--" not in legacy or hostname_problem(legacy) is not None:
        # IDNA 2003 dropped the character (another name), or the name is no host name at all
        return why
    return f"{why}; if it is registered under the older IDNA 2003 rules, write {legacy!r}"


def hostname_problem(name: str, *, underscore: bool = True) -> str | None:
    """Why `name` is no ASCII DNS host name, or None; `underscore` allows '_' in labels,
    as real host names have them though RFC 952 does not. A Unicode name is a problem that
    names its A-label form."""
    if not name.isascii():
        ascii_name, problem = to_a_labels(name)
        if problem is None:
            problem = hostname_problem(ascii_name, underscore=underscore)
        return problem or f"is not ASCII; write it as {ascii_name!r}"
    if any(char.isspace() for char in name):
        return "contains white space"
    if len(name.rstrip(".")) > 253:
        return "is longer than 253 characters"
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    for label in labels:
        problem = _label_problem(label, underscore)
        if problem is not None:
            return problem
    if labels[-1].isdigit():
        return "ends in an all-digit part, so it is neither a host name nor an IPv4 address"
    return None


def _label_problem(label: str, underscore: bool) -> str | None:
    """Why `label` cannot be one dot-separated part of an ASCII host name, or None."""
    if not label:
        return "has an empty part (two dots in a row, or a leading dot)"
    if len(label) > 63:
        return "has a part longer than 63 characters"
    if (_HOST_LABEL if underscore else _LDH_LABEL).fullmatch(label):
        return None
    bad = [c for c in label if not (c.isalnum() or c in "-_")]
    if bad:
        return f"contains {bad[0]!r}, which is not allowed in a host name"
    if "_" in label and not underscore:
        return "contains '_', which is not allowed here"
    return "has a part that starts or ends with '-'"


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
    return hostname_problem(value, underscore=False)


def is_ip_address(text: str) -> bool:
    """True for an IPv4 or IPv6 address (no brackets)."""
    return is_ipv4(text) or is_ipv6(text)


def sni_name(servername: str) -> str | None:
    """The name for SNI in ASCII (A-labels), without a final dot; none for an IP address
    (RFC 6066 allows only host names) or a name IDNA 2008 refuses."""
    name = servername.strip("[]").rstrip(".")
    if not name or is_ip_address(name):
        return None
    if not name.isascii():
        name, problem = to_a_labels(name)
        if problem is not None:
            return None
    return name


def format_address(host: str, port: int) -> str:
    """`host:port`, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_port(text: str, *, allow_zero: bool = False) -> int:
    """A port number from text; ValueError names the problem."""
    low = 0 if allow_zero else 1
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= 65535:
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
        if is_ipv6(text):
            return text, None
        head = text.rpartition(":")[0]
        if "::" in text or re.fullmatch(r"[0-9A-Fa-f:.]+", head):  # meant as an address
            raise ValueError(f"bad address {text!r}: an IPv6 address with a port needs brackets")
        raise ValueError(f"bad address {text!r}: expected HOST or HOST:PORT")
    host, sep, port = text.partition(":")
    return host, port if sep else None


def parse_listen_address(text: str) -> tuple[str | None, int]:
    """(host or None for every address, port) from `:9025`, `0.0.0.0:9025`, `[::1]:9025` or
    `localhost:9025`; ValueError names the problem."""
    host, port = split_host_port(text)
    if port is None:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host or None, parse_port(port, allow_zero=True)
