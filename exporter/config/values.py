"""Readers of single config values: each takes what YAML gave and returns the typed value,
or raises `InvalidValue` with every problem, worded for the person who wrote the file."""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import date

from cryptography import x509

from exporter.access import AllowRule, parse_rule
from exporter.defaults import MAX_CA_FILE_BYTES, MAX_LABEL_INTEGER
from exporter.durations import MAX_DURATION, format_duration, parse_duration
from exporter.mx import domain_name, parse_server
from exporter.names import ehlo_name_problem, label_name_problem, parse_host
from exporter.target import TLSMode, TLSVersion

#: What `str.strip()` removes, as a regex character class: JSON Schema patterns use it to
#: accept exactly the padding the readers strip.
WHITESPACE_CLASS = "[\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

DURATION_EXPECTED = "a duration like 30s, 5m or 1h30m, or a number of seconds"

#: Every way a version may be written (lower case): its label (`1.2`), its name (`tlsv1.2`)
#: and its name without the v (`tls1.2`).
VERSION_SPELLINGS: Mapping[str, TLSVersion] = {
    spelling: version
    for version in TLSVersion
    for spelling in (
        version.value,
        version.display.lower(),
        version.display.lower().replace("v", ""),
    )
}


@dataclass(frozen=True, slots=True)
class ValueProblem:
    """One thing wrong with a value: the value itself (`item` None) or one of its items."""

    message: str
    #: The list index or mapping key of the item at fault, or None for the whole value.
    item: Hashable | None = None
    #: The index of an earlier item this one repeats; the message then names where it is.
    repeats: Hashable | None = None


class InvalidValue(Exception):
    """A value that cannot be used; `problems` says why, item by item."""

    def __init__(self, *problems: ValueProblem) -> None:
        super().__init__(*problems)
        self.problems = problems

    @classmethod
    def because(cls, message: str) -> InvalidValue:
        """The whole value is wrong for one reason."""
        return cls(ValueProblem(message))


@dataclass(frozen=True, slots=True)
class ValueContext:
    """What reading a value may depend on beyond the value: where relative files are."""

    #: The directory a relative `ca_file` is taken from (None: the working directory).
    base_dir: str | None = None
    #: Verdicts on CA files already checked, so a bundle named by every target is read once.
    ca_file_problems: dict[str, str | None] = field(default_factory=dict)


def describe(value: object) -> str:
    """How a YAML value reads in a message."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large number"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__}"


# --- Numbers ---------------------------------------------------------------------------------


def read_duration(value: object, *, minimum: float | None) -> float:
    """Seconds from a Prometheus duration or a bare number, more than 0 and at most 1y."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidValue.because(f"must be {DURATION_EXPECTED}, got {describe(value)}")
    seconds = _duration_text(value) if isinstance(value, str) else _duration_number(value)
    if minimum is not None and seconds < minimum:
        raise InvalidValue.because(
            f"must be at least {format_duration(minimum)}, got {describe(value)}"
        )
    if seconds <= 0:
        raise InvalidValue.because(f"must be more than 0, got {describe(value)}")
    if seconds > MAX_DURATION:
        raise InvalidValue.because(f"must be at most 1y, got {describe(value)}")
    return seconds


def _duration_text(value: str) -> float:
    seconds = parse_duration(value.strip())
    if seconds is None:
        hint = ""
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value.strip()):
            hint = " (a quoted number needs a unit: write 30s, or 30 without quotes)"
        raise InvalidValue.because(f"must be {DURATION_EXPECTED}, got {describe(value)}{hint}")
    return seconds


def _duration_number(value: int | float) -> float:
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if math.isnan(seconds) or seconds < 0:
        raise InvalidValue.because(f"must be {DURATION_EXPECTED}, got {value}")
    return seconds


def read_integer(value: object, low: int, high: int) -> int:
    """A YAML integer from `low` to `high`; never a float or a boolean."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    extra = " (YAML reads yes/no/on/off as booleans)" if isinstance(value, bool) else ""
    raise InvalidValue.because(
        f"must be an integer from {low} to {high}, got {describe(value)}{extra}"
    )


# --- Text ----------------------------------------------------------------------------------


def read_text(value: object) -> str:
    """A string with something besides white space in it."""
    if not isinstance(value, str):
        raise InvalidValue.because(f"must be text, got {describe(value)}")
    if not value.strip():
        raise InvalidValue.because("must not be empty")
    return value


def _is_label_integer(value: object) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_LABEL_INTEGER
    )


def read_label_value(value: object) -> str:
    """Text for a label value; a YAML integer is taken as its decimal text."""
    if _is_label_integer(value):
        return str(value)
    return read_text(value)


def read_host(value: object, *, final_dot: bool = True) -> str:
    """A DNS name (Unicode becomes A-labels) or an IP address (IPv6 without brackets).

    `final_dot=False` drops a final dot, for names that are matched rather than resolved.
    """
    text = read_text(value)
    host, problem = parse_host(text if final_dot else text.rstrip("."), unicode=True)
    if problem is not None:
        raise InvalidValue.because(f"{describe(value)} {problem}")
    return host


def read_domain(value: object) -> str:
    """A mail domain (Unicode becomes A-labels, lowercase, no final dot); no IP address."""
    text = read_text(value)
    name, parsed, problem = domain_name(text)
    if parsed is None:
        raise InvalidValue.because(f"{describe(value)} {problem}")
    return name


#: Name servers one config may list.
MAX_DNS_SERVERS = 8


def read_dns_servers(value: object) -> tuple[str, ...]:
    """Name server addresses (`IP`, `IP:PORT`, `[IPv6]:PORT`), in the order to ask them."""
    if not isinstance(value, list):
        raise InvalidValue.because(
            f"must be a list of name server addresses (IP or IP:PORT), got {describe(value)}"
        )
    if not value:
        raise InvalidValue.because("must list at least one name server (or leave `servers` out)")
    if len(value) > MAX_DNS_SERVERS:
        raise InvalidValue.because(f"lists {len(value)} name servers; at most {MAX_DNS_SERVERS}")
    servers: list[str] = []
    problems: list[ValueProblem] = []
    for index, item in enumerate(value):
        try:
            parse_server(read_text(item).strip())
        except InvalidValue as exc:
            problems.extend(ValueProblem(p.message, index) for p in exc.problems)
            continue
        except ValueError as exc:
            problems.append(ValueProblem(str(exc), index))
            continue
        servers.append(item.strip())
    if problems:
        raise InvalidValue(*problems)
    return tuple(servers)


def read_allow_list(value: object) -> tuple[AllowRule, ...]:
    """`on_demand.allow`: host names, `*.domain` wildcards, IP addresses and networks."""
    if not isinstance(value, list):
        raise InvalidValue.because(
            "must be a list of host names ('mx.example.org', '*.example.org'), IP addresses"
            f" and networks ('192.0.2.0/24'), got {describe(value)}"
        )
    rules: list[AllowRule] = []
    problems: list[ValueProblem] = []
    for index, item in enumerate(value):
        try:
            rules.append(parse_rule(read_text(item)))
        except InvalidValue as exc:
            problems.extend(ValueProblem(p.message, index) for p in exc.problems)
        except ValueError as exc:
            problems.append(ValueProblem(str(exc), index))
    if problems:
        raise InvalidValue(*problems)
    return tuple(rules)


#: Senders one target may be tested with.
MAX_SENDERS = 16


def read_sender_names(value: object) -> tuple[str, ...]:
    """Names of sender profiles (built-in or the config's), each once; [] tests none."""
    if not isinstance(value, list):
        raise InvalidValue.because(f"must be a list of sender profile names, got {describe(value)}")
    if len(value) > MAX_SENDERS:
        raise InvalidValue.because(f"lists {len(value)} senders; at most {MAX_SENDERS}")
    names: list[str] = []
    problems: list[ValueProblem] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            problems.append(ValueProblem(f"must be a profile name, got {describe(item)}", index))
        elif item.strip() in names:
            problems.append(ValueProblem(f"{item.strip()!r} is listed twice", index))
        else:
            names.append(item.strip())
    if problems:
        raise InvalidValue(*problems)
    return tuple(names)


def read_ehlo_name(value: object) -> str:
    """A name EHLO may carry: an ASCII domain or an address literal."""
    text = read_text(value)
    problem = ehlo_name_problem(text)
    if problem is not None:
        raise InvalidValue.because(f"{describe(value)} {problem}")
    return text


def read_tls_mode(value: object) -> TLSMode:
    """`starttls` or `implicit`, in any case."""
    if isinstance(value, str):
        try:
            return TLSMode(value.strip().lower())
        except ValueError:
            pass
    hint = ""
    if isinstance(value, str) and value.strip().lower() in {"ssl", "tls", "smtps"}:
        hint = " (did you mean 'implicit'? TLS from the first byte, as on port 465)"
    raise InvalidValue.because(f"must be 'starttls' or 'implicit', got {describe(value)}{hint}")


# --- Lists and mappings -----------------------------------------------------------------------


def version_from(item: object) -> TLSVersion | None:
    """A version from its label (`1.2`), a YAML float (1.2) or its name (`TLSv1.2`)."""
    if isinstance(item, float):
        return VERSION_SPELLINGS.get(repr(item))
    if isinstance(item, str):
        return VERSION_SPELLINGS.get(item.strip().lower())
    return None


def read_versions(value: object) -> tuple[TLSVersion, ...]:
    """A non-empty list of distinct versions, returned in protocol order."""
    valid = ", ".join(v.value for v in TLSVersion)
    if not isinstance(value, list):
        raise InvalidValue.because(f"must be a list like ['1.2', '1.3'], got {describe(value)}")
    if not value:
        raise InvalidValue.because(f"must list at least one version (valid: {valid})")
    found: dict[TLSVersion, int] = {}
    problems = []
    for index, item in enumerate(value):
        version = version_from(item)
        if version is None:
            problems.append(
                ValueProblem(f"unknown version {describe(item)} (valid: {valid})", index)
            )
        elif version in found:
            problems.append(
                ValueProblem(f"{version.value} is listed twice", index, repeats=found[version])
            )
        else:
            found[version] = index
    if problems:
        raise InvalidValue(*problems)
    return tuple(v for v in TLSVersion if v in found)


#: Labels one target (or `defaults`) may set: more is no labelling scheme, and `defaults`'
#: labels merge into every target, so the product would grow with the square of the file.
MAX_LABELS = 64


def read_labels(value: object) -> dict[str, str]:
    """Label names to text values; null is no labels."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValue.because(
            f"must be a mapping of label names to values, got {describe(value)}"
        )
    if len(value) > MAX_LABELS:
        raise InvalidValue.because(f"sets {len(value)} labels; at most {MAX_LABELS}")
    labels: dict[str, str] = {}
    problems = []
    for name, text in value.items():
        problem = _label_problem(name, text)
        if problem is not None:
            problems.append(ValueProblem(problem, name))
        else:
            labels[name] = str(text)  # text, or an integer: its decimal text
    if problems:
        raise InvalidValue(*problems)
    return labels


def _label_problem(name: object, value: object) -> str | None:
    if not isinstance(name, str):
        return f"a label name must be text, got {describe(name)}"
    problem = label_name_problem(name)
    if problem is not None:
        return problem
    if _is_label_integer(value):
        return None
    if not isinstance(value, str):
        return f"a label value must be text (quote it), got {describe(value)}"
    if not value:
        return "must not be empty (an empty label is no label)"
    return None


# --- Files ---------------------------------------------------------------------------------


def read_ca_file(value: object, context: ValueContext) -> str | None:
    """The path of a PEM bundle of CA certificates; null means the system trust store."""
    if value is None:
        return None
    file = read_text(value)
    if context.base_dir is not None and not os.path.isabs(file):
        file = os.path.join(context.base_dir, file)
    if file not in context.ca_file_problems:
        context.ca_file_problems[file] = ca_file_problem(file)
    problem = context.ca_file_problems[file]
    if problem is not None:
        raise InvalidValue.because(problem)
    return file


def ca_file_problem(file: str) -> str | None:
    """Why `file` is no usable PEM bundle of CA certificates, or None."""
    try:
        info = os.stat(file)
    except FileNotFoundError:
        return f"file not found: {file}"
    except OSError as exc:
        return f"cannot read {file}: {exc.strerror or exc}"
    if stat.S_ISDIR(info.st_mode):
        return f"{file} is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        return f"{file} is not a regular file"
    if info.st_size > MAX_CA_FILE_BYTES:
        return f"{file} is larger than 10 MiB, too large for a CA bundle"
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_CA_FILE_BYTES + 1)
    except OSError as exc:
        return f"cannot read {file}: {exc.strerror or exc}"
    return _pem_problem(file, data)


def _pem_problem(file: str, data: bytes) -> str | None:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        if data[:1] == b"\x30":
            return (
                f"{file} holds no PEM certificate (DER? convert it with"
                " `openssl x509 -inform der -in FILE -out FILE.pem`)"
            )
        return f"{file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        return f"{file} holds a broken PEM certificate: {exc}"
    return None
