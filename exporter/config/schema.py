"""Every key of the config file in one table: its kind, its default and what it means.

The reader walks a file against this table, and the same table becomes JSON Schema: the
config file's (`json_schema()`) and the Helm chart's copy in values.schema.json (written
by scripts/helm-schema.py), so the exporter and the chart cannot disagree about a key.

A JSON Schema cannot say everything the exporter checks (that a CA file exists, that a
timeout fits its interval, that a name is a valid host name): where it cannot, it accepts,
so the chart never refuses a config the exporter would run. Helm keeps numbers as float64
and writes them back with Go's encoding/json, so the chart's schema (`HELM_NUMBERS`) also
refuses the number it can tell would reach the exporter changed: the version 1.0 (as `1`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from exporter.access import AllowRule
from exporter.config.values import (
    MAX_LABELS,
    VERSION_SPELLINGS,
    WHITESPACE_CLASS,
    ValueContext,
    read_allow_list,
    read_ca_file,
    read_dns_servers,
    read_domain,
    read_duration,
    read_ehlo_name,
    read_host,
    read_integer,
    read_label_value,
    read_labels,
    read_sender_names,
    read_tls_mode,
    read_versions,
)
from exporter.defaults import (
    DEFAULT_CONNECTIONS,
    DEFAULT_DNS_TIMEOUT,
    DEFAULT_INTERVAL,
    DEFAULT_MAX_CONNECTIONS_PER_MINUTE,
    DEFAULT_ON_DEMAND_MAX_CONCURRENT,
    DEFAULT_ON_DEMAND_MIN_INTERVAL,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_MINUTE,
    MAX_LABEL_INTEGER,
    MAX_ON_DEMAND_CONCURRENT,
    MIN_INTERVAL,
)
from exporter.durations import MAX_DURATION, format_duration
from exporter.names import RESERVED_LABELS
from exporter.target import DEFAULT_VERSIONS, TLSMode, TLSVersion

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
JSONObject = dict[str, Any]

DRAFT = "http://json-schema.org/draft-07/schema#"
DURATION_REF = "#/definitions/duration"
LABELS_REF = "#/definitions/labels"
SETTINGS_REF = "#/definitions/settings"
TARGET_REF = "#/definitions/target"
DNS_REF = "#/definitions/dns"
ON_DEMAND_REF = "#/definitions/on_demand"

#: A string with something besides white space in it (what the readers call empty).
_NOT_BLANK = "[^" + WHITESPACE_CLASS[1:]


def _padded(pattern: str) -> str:
    """`pattern` as the whole string, give or take the white space the readers strip."""
    return f"^{WHITESPACE_CLASS}*(?:{pattern}){WHITESPACE_CLASS}*$"


def _any_case(words: list[str]) -> str:
    """Alternatives matched in any letter case, without the flags JSON Schema lacks."""

    def letters(word: str) -> str:
        return "".join(f"[{c.upper()}{c}]" if c.isalpha() else re.escape(c) for c in word.lower())

    return "|".join(letters(word) for word in words)


def _number(value: float) -> float | int:
    """Whole numbers as JSON integers, so the schema reads 1 rather than 1.0."""
    return int(value) if float(value).is_integer() else value


@dataclass(frozen=True, slots=True)
class Numbers:
    """How the numbers of a config reach the exporter's YAML reader, which decides what a
    number in the JSON Schema may be."""

    #: 1.0 arrives as `1.0` (a float, TLS 1.0) rather than `1` (an integer, no version).
    whole_floats_keep_point: bool


#: A config file written by hand: PyYAML reads numbers exactly as written.
YAML_NUMBERS = Numbers(whole_floats_keep_point=True)
#: Helm values: float64 numbers, written into the config file by Go's encoding/json. (An
#: integer of more than 53 bits may arrive rounded; Helm's schema check sees it rounded too,
#: so no schema can refuse it without refusing the many large integers that arrive intact.)
HELM_NUMBERS = Numbers(whole_floats_keep_point=False)

#: Integers a label value may be: 64 bits.
_LABEL_INTEGERS: JSONObject = {"minimum": -MAX_LABEL_INTEGER, "maximum": MAX_LABEL_INTEGER}


# --- Kinds of value ----------------------------------------------------------------------


class Kind(Protocol[T_co]):
    """What a key's value must be: how to read it from YAML, and how to say it in JSON Schema."""

    def read(self, value: object, context: ValueContext, /) -> T_co:
        """The value, or `InvalidValue` with every problem."""
        ...

    def json_schema(self, numbers: Numbers, /) -> JSONObject:
        """The value's JSON Schema, for numbers that arrive as `numbers` say: never stricter
        than `read`."""
        ...


@dataclass(frozen=True, slots=True)
class Duration:
    """A Prometheus duration (`30s`, `1h30m`) or a number of seconds; more than 0, at most 1y."""

    minimum: float | None = None

    def read(self, value: object, _context: ValueContext) -> float:
        return read_duration(value, minimum=self.minimum)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        parts: list[JSONObject] = [{"$ref": DURATION_REF}]
        if self.minimum is not None:
            parts.append({"minimum": _number(self.minimum)})
        return {"allOf": parts}

    @staticmethod
    def definition() -> JSONObject:
        units = "".join(f"(?:[0-9]+{unit})?" for unit in ("y", "w", "d", "h", "m", "s", "ms"))
        return {
            "description": "A Prometheus duration (500ms, 30s, 5m, 1h30m, 1d, 1w, 1y) or a"
            " number of seconds; more than 0 and at most 1y.",
            "anyOf": [
                # Units in that order, and some digit that is not 0: the text is no zero.
                {"type": "string", "allOf": [{"pattern": _padded(units)}, {"pattern": "[1-9]"}]},
                {"type": "number", "exclusiveMinimum": 0, "maximum": _number(MAX_DURATION)},
            ],
        }


@dataclass(frozen=True, slots=True)
class Integer:
    """A YAML integer from `low` to `high`."""

    low: int
    high: int

    def read(self, value: object, _context: ValueContext) -> int:
        return read_integer(value, self.low, self.high)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True, slots=True)
class HostName:
    """A DNS name or an IP address; `final_dot=False` drops a final dot (a name to match)."""

    final_dot: bool = True

    def read(self, value: object, _context: ValueContext) -> str:
        return read_host(value, final_dot=self.final_dot)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": "string", "pattern": _NOT_BLANK}


@dataclass(frozen=True, slots=True)
class DomainName:
    """A mail domain: a DNS name (Unicode becomes A-labels), not an IP address."""

    def read(self, value: object, _context: ValueContext) -> str:
        return read_domain(value)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": "string", "pattern": _NOT_BLANK}


@dataclass(frozen=True, slots=True)
class DnsServers:
    """Name server addresses: `IP`, `IP:PORT` or `[IPv6]:PORT`."""

    def read(self, value: object, _context: ValueContext) -> tuple[str, ...]:
        return read_dns_servers(value)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": _NOT_BLANK}}


@dataclass(frozen=True, slots=True)
class AllowList:
    """Who /probe may probe: host names, `*.domain` wildcards, IP addresses and networks."""

    def read(self, value: object, _context: ValueContext) -> tuple[AllowRule, ...]:
        return read_allow_list(value)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": "array", "items": {"type": "string", "pattern": _NOT_BLANK}}


@dataclass(frozen=True, slots=True)
class SenderNames:
    """Names of sender profiles: built-in ones or those under `profiles:`."""

    def read(self, value: object, _context: ValueContext) -> tuple[str, ...]:
        return read_sender_names(value)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "pattern": _NOT_BLANK},
        }


@dataclass(frozen=True, slots=True)
class EhloName:
    """What may follow EHLO: an ASCII domain or an address literal."""

    def read(self, value: object, _context: ValueContext) -> str:
        return read_ehlo_name(value)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": "string", "pattern": _NOT_BLANK}


@dataclass(frozen=True, slots=True)
class LabelValue:
    """Text for a label value; a YAML integer is taken as its decimal text."""

    def read(self, value: object, _context: ValueContext) -> str:
        return read_label_value(value)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": ["string", "integer"], "pattern": _NOT_BLANK, **_LABEL_INTEGERS}


@dataclass(frozen=True, slots=True)
class TLSModeName:
    """How TLS starts: `starttls` or `implicit`, in any letter case."""

    def read(self, value: object, _context: ValueContext) -> TLSMode:
        return read_tls_mode(value)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": "string", "pattern": _padded(_any_case([m.value for m in TLSMode]))}


@dataclass(frozen=True, slots=True)
class VersionList:
    """Distinct protocol versions, written `1.2`, `TLSv1.2`, `tls1.2` or as the YAML float 1.2."""

    def read(self, value: object, _context: ValueContext) -> tuple[TLSVersion, ...]:
        return read_versions(value)

    def json_schema(self, numbers: Numbers) -> JSONObject:
        spellings = sorted(VERSION_SPELLINGS)
        floats = [float(s) for s in spellings if re.fullmatch(r"[0-9]+\.[0-9]+", s)]
        keep_point = numbers.whole_floats_keep_point
        written = {f: repr(f) if keep_point or not f.is_integer() else str(int(f)) for f in floats}
        return {
            "type": "array",
            "minItems": 1,
            # Only identical items; `1.2` and 'TLSv1.2' twice is for the exporter to find.
            "uniqueItems": True,
            "items": {
                "anyOf": [
                    {"type": "string", "pattern": _padded(_any_case(spellings))},
                    {"type": "number", "enum": [f for f in floats if written[f] in spellings]},
                ]
            },
        }


@dataclass(frozen=True, slots=True)
class LabelMap:
    """Label names (not the exporter's own, not `__`) to text or integer values; null is none."""

    def read(self, value: object, _context: ValueContext) -> Mapping[str, str]:
        return read_labels(value)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"allOf": [{"$ref": LABELS_REF}]}

    @staticmethod
    def definition() -> JSONObject:
        return {
            "description": "Extra constant labels: names of letters, digits and _ (not"
            " starting with a digit or __, not a label the exporter sets) to text.",
            "type": ["object", "null"],
            "maxProperties": MAX_LABELS,
            "propertyNames": {
                "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$",
                "not": {"anyOf": [{"pattern": "^__"}, {"enum": sorted(RESERVED_LABELS)}]},
            },
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "integer", **_LABEL_INTEGERS},
                ]
            },
        }


@dataclass(frozen=True, slots=True)
class CAFile:
    """A PEM bundle of CA certificates, relative to the config file; null is the system store."""

    def read(self, value: object, context: ValueContext) -> str | None:
        return read_ca_file(value, context)

    def json_schema(self, _numbers: Numbers) -> JSONObject:
        return {"type": ["string", "null"], "pattern": _NOT_BLANK}


# --- The table ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key(Generic[T]):
    """One key a target or `defaults` may have."""

    name: str
    kind: Kind[T]
    #: The value when neither the target nor `defaults` sets it; None where it depends on
    #: something else, which `description` then names.
    default: T
    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class Section:
    """One key at the top level of the file."""

    name: str
    description: str


INTERVAL: Key[float] = Key(
    "interval", Duration(minimum=MIN_INTERVAL), DEFAULT_INTERVAL, "How often the target is probed."
)
LEGACY_INTERVAL: Key[float | None] = Key(
    "legacy_interval",
    Duration(minimum=MIN_INTERVAL),
    None,
    "How often SSLv2, SSLv3, TLS 1.0 and 1.1 are tested again (their verdicts carry on in "
    "between); TLS 1.2, 1.3 and the certificate follow `interval`. Default: every interval.",
)
TIMEOUT: Key[float] = Key(
    "timeout",
    Duration(),
    DEFAULT_TIMEOUT,
    "Deadline for one whole probe of the target; no longer than the interval.",
)
EHLO_NAME: Key[str | None] = Key(
    "ehlo_name",
    EhloName(),
    None,
    "Name sent in EHLO: a domain or an address literal like [192.0.2.1]; default: this"
    " machine's FQDN.",
)
CA_FILE: Key[str | None] = Key(
    "ca_file",
    CAFile(),
    None,
    "PEM file of trust anchors for verification, relative to the config file's directory;"
    " null (the default) is the system store.",
)
VERSIONS: Key[tuple[TLSVersion, ...]] = Key(
    "versions",
    VersionList(),
    DEFAULT_VERSIONS,
    "Versions to test: ssl2 (only on request), ssl3, 1.0, 1.1, 1.2, 1.3.",
)
SENDERS: Key[tuple[str, ...]] = Key(
    "senders",
    SenderNames(),
    ("exchange-online",),
    "Senders whose ClientHello is tried on the server, one connection each: built-in"
    " (exchange-online, gmail, postfix, exim-gnutls, exchange-2016) or under `profiles:`;"
    " on the legacy_interval's cadence where one is set.",
)
CONNECTIONS: Key[int] = Key(
    "connections",
    Integer(1, MAX_CONNECTIONS),
    DEFAULT_CONNECTIONS,
    "Connections at once to the server: within one probe, and over every target on the same"
    " IP address.",
)
CONNECTIONS_PER_MINUTE: Key[int] = Key(
    "max_connections_per_minute",
    Integer(1, MAX_CONNECTIONS_PER_MINUTE),
    DEFAULT_MAX_CONNECTIONS_PER_MINUTE,
    "Connections started per minute to each of the server's IP addresses, counted over every"
    " target on that address (mail servers limit per client address); a probe waits for room"
    " up to half its timeout. A probe of every version takes six.",
)
LABELS: Key[Mapping[str, str]] = Key(
    "labels",
    LabelMap(),
    MappingProxyType({}),
    "Extra constant labels on the target's series; a target's labels merge over those of"
    " `defaults`.",
)
HOST: Key[str | None] = Key(
    "host",
    HostName(),
    None,
    "DNS name or IP address of the SMTP server; a Unicode name is used as its A-labels."
    " Each target has `host` or `domain`.",
)
DOMAIN: Key[str | None] = Key(
    "domain",
    DomainName(),
    None,
    "A mail domain instead of a host: its MX hosts, looked up anew every interval, are each"
    " probed on `port` with the MX host's name as servername and `target` label.",
)
PORT: Key[int] = Key("port", Integer(1, 65535), DEFAULT_PORT, "TCP port of the SMTP server.")
TLS: Key[TLSMode | None] = Key(
    "tls",
    TLSModeName(),
    None,
    "starttls (the default) or implicit: TLS from the first byte (the default on port 465).",
)
NAME: Key[str | None] = Key(
    "name", LabelValue(), None, "Value of the `target` label; default: host:port."
)
SERVERNAME: Key[str | None] = Key(
    "servername",
    HostName(final_dot=False),
    None,
    "SNI and the name the certificate must match; default: the host.",
)

#: Keys of `defaults`, which every target may also set.
SETTINGS: tuple[Key[Any], ...] = (
    INTERVAL,
    LEGACY_INTERVAL,
    TIMEOUT,
    EHLO_NAME,
    CA_FILE,
    VERSIONS,
    SENDERS,
    CONNECTIONS,
    CONNECTIONS_PER_MINUTE,
    LABELS,
)
#: Keys only a target may set.
TARGET_ONLY: tuple[Key[Any], ...] = (HOST, DOMAIN, PORT, TLS, NAME, SERVERNAME)
#: Keys a `domain` target may not set: its MX records name its hosts.
HOST_ONLY: tuple[Key[Any], ...] = (NAME, SERVERNAME)

DNS_SERVERS: Key[tuple[str, ...]] = Key(
    "servers",
    DnsServers(),
    (),
    "Name servers to ask (IP or IP:PORT, IPv6 as [IPv6]:PORT), in order; default: the"
    " system's resolver (/etc/resolv.conf).",
)
DNS_TIMEOUT: Key[float] = Key(
    "timeout",
    Duration(),
    DEFAULT_DNS_TIMEOUT,
    "How long one look-up may take, every server and retry included.",
)
#: Keys of `dns`.
DNS_KEYS: tuple[Key[Any], ...] = (DNS_SERVERS, DNS_TIMEOUT)
ALLOW: Key[tuple[AllowRule, ...]] = Key(
    "allow",
    AllowList(),
    (),
    "Who /probe may probe: host names ('mx.example.org'), every name under a domain"
    " ('*.example.org', not example.org itself), IP addresses and networks ('192.0.2.0/24',"
    " '2001:db8::/32'). A name that resolves to a loopback, private, link-local or metadata"
    " address is refused unless that address is listed too.",
)
ON_DEMAND_MIN_INTERVAL: Key[float] = Key(
    "min_interval",
    Duration(),
    DEFAULT_ON_DEMAND_MIN_INTERVAL,
    "A request for the same target (and tls, servername) within this time gets the last"
    " result instead of a new probe.",
)
MAX_CONCURRENT: Key[int] = Key(
    "max_concurrent",
    Integer(1, MAX_ON_DEMAND_CONCURRENT),
    DEFAULT_ON_DEMAND_MAX_CONCURRENT,
    "On-demand probes running at once; a request for another gets 429.",
)
#: Keys of `on_demand`.
ON_DEMAND_KEYS: tuple[Key[Any], ...] = (ALLOW, ON_DEMAND_MIN_INTERVAL, MAX_CONCURRENT)
#: Every key of a target, in the order they are read (and problems reported).
TARGET: tuple[Key[Any], ...] = (*TARGET_ONLY, *SETTINGS)

DEFAULTS = Section(
    "defaults",
    "Settings every target inherits; a target's own value replaces them, except labels,"
    " which merge key by key.",
)
TARGETS = Section(
    "targets", "The SMTP servers (`host`) and mail domains (`domain`) to probe; at least one."
)
DNS = Section(
    "dns", "The resolver for MX look-ups and their hosts' addresses; default: the system's."
)
ON_DEMAND = Section(
    "on_demand",
    "Who /probe?target=HOST[:PORT] may probe, with the settings of `defaults`; default:"
    " nobody (every request is refused).",
)
PROFILES = Section(
    "profiles",
    "Sender profiles of your own (a partner's gateway): name -> versions, suites, groups,"
    " signature_algorithms, sni; tested on targets that list them under `senders`.",
)
IMPORTANT_SENDERS = Section(
    "important_senders",
    "Senders whose incompatibility is worth an alert: smtp_tls_sender_important{profile}"
    " marks them wherever they are tested (default: exchange-online).",
)
TOP_LEVEL: tuple[Section, ...] = (
    DEFAULTS,
    TARGETS,
    DNS,
    ON_DEMAND,
    PROFILES,
    IMPORTANT_SENDERS,
)
#: Top-level keys with this prefix are ignored, so they can hold YAML anchors.
EXTENSION_PREFIX = "x-"

TOP_KEYS = tuple(section.name for section in TOP_LEVEL)
SETTING_KEYS = tuple(key.name for key in SETTINGS)
TARGET_KEYS = tuple(key.name for key in TARGET)
DNS_KEY_NAMES = tuple(key.name for key in DNS_KEYS)
ON_DEMAND_KEY_NAMES = tuple(key.name for key in ON_DEMAND_KEYS)


# --- As JSON Schema ---------------------------------------------------------------------------


def _json_default(key: Key[Any]) -> object:
    """The default as it would be written in the file, or None where there is none to write."""
    default = key.default
    if isinstance(key.kind, Duration):
        return None if default is None else format_duration(default)
    if isinstance(default, tuple):
        return [item.value if isinstance(item, Enum) else item for item in default]
    if isinstance(default, Mapping):
        return dict(default)
    return default


def _property(key: Key[Any], numbers: Numbers) -> JSONObject:
    schema: JSONObject = {"description": key.description}
    default = _json_default(key)
    if default is not None:
        schema["default"] = default
    return {**schema, **key.kind.json_schema(numbers)}


def _mapping_of(keys: tuple[Key[Any], ...], numbers: Numbers, description: str) -> JSONObject:
    schema: JSONObject = {"description": description, "type": "object"}
    required = [key.name for key in keys if key.required]
    if required:
        schema["required"] = required
    schema["properties"] = {key.name: _property(key, numbers) for key in keys}
    schema["additionalProperties"] = False
    return schema


def definitions(numbers: Numbers = YAML_NUMBERS) -> dict[str, JSONObject]:
    """The shared parts of the config's JSON Schema, for `#/definitions/...`."""
    return {
        "duration": Duration.definition(),
        "labels": LabelMap.definition(),
        "settings": _mapping_of(
            SETTINGS, numbers, "Settings of `defaults`; a target may set each too."
        ),
        "target": {
            **_mapping_of(TARGET, numbers, "One SMTP server (`host`) or mail domain (`domain`)."),
            "oneOf": [{"required": [HOST.name]}, {"required": [DOMAIN.name]}],
        },
        "dns": _mapping_of(DNS_KEYS, numbers, DNS.description),
        "on_demand": _mapping_of(ON_DEMAND_KEYS, numbers, ON_DEMAND.description),
    }


def config_schema(*, targets_required: bool = True) -> JSONObject:
    """The JSON Schema of the file's top level, referring to `definitions()`.

    `targets_required=False` lets `targets` be missing or empty, which the exporter refuses:
    for the Helm chart, whose default values have no targets yet.
    """
    targets: JSONObject = {
        "description": TARGETS.description,
        "type": "array",
        "items": {"$ref": TARGET_REF},
    }
    if targets_required:
        targets["minItems"] = 1
    schema: JSONObject = {"type": "object"}
    if targets_required:
        schema["required"] = [TARGETS.name]
    schema["properties"] = {
        DEFAULTS.name: {
            "description": DEFAULTS.description,
            "anyOf": [{"type": "null"}, {"$ref": SETTINGS_REF}],
        },
        TARGETS.name: targets,
        DNS.name: {"description": DNS.description, "anyOf": [{"type": "null"}, {"$ref": DNS_REF}]},
        PROFILES.name: {
            "description": PROFILES.description,
            "type": ["object", "null"],
            "additionalProperties": {"type": "object"},
        },
        IMPORTANT_SENDERS.name: {
            "description": IMPORTANT_SENDERS.description,
            "type": ["array", "null"],
            "items": {"type": "string", "pattern": _NOT_BLANK},
        },
        ON_DEMAND.name: {
            "description": ON_DEMAND.description,
            "anyOf": [{"type": "null"}, {"$ref": ON_DEMAND_REF}],
        },
    }
    schema["patternProperties"] = {f"^{EXTENSION_PREFIX}": {}}
    schema["additionalProperties"] = False
    return schema


def json_schema() -> JSONObject:
    """The JSON Schema of the config file, as one document."""
    return {
        "$schema": DRAFT,
        "title": "smtp-tls-exporter config file",
        **config_schema(),
        "definitions": definitions(),
    }
