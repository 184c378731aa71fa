"""MTA-STS (RFC 8461) records and policies, read as a sending MTA reads them; no I/O.

The `_mta-sts.<domain>` TXT record says a policy exists and names its version (`id`); the
policy itself (from `https://mta-sts.<domain>/.well-known/mta-sts.txt`) says which MX hosts
may receive the domain's mail and whether senders must insist on TLS to them. Every way a
record or policy is broken is named the way TLS reports (RFC 8460) name it, so what this
reports matches what senders will report to the domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

#: The most a policy may be: senders stop reading there (RFC 8461 3.3 suggests 64 KiB).
MAX_POLICY_BYTES: Final = 64 * 1024
#: The longest `max_age` allowed: a year (RFC 8461 3.2).
MAX_AGE_LIMIT: Final = 31_557_600
#: The most `mx` patterns kept from one policy.
MAX_PATTERNS: Final = 64

_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_FIELD = re.compile(r"([A-Za-z0-9_]+):[ \t]*(.*?)[ \t]*")
_TXT_FIELD = re.compile(r"[ \t]*([A-Za-z0-9_]+)=([\x21-\x3a\x3c\x3e-\x7e]{1,})[ \t]*")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class Mode(StrEnum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


class Result(StrEnum):
    """How far a domain's MTA-STS got; the failures are RFC 8460's result types."""

    VALID = "valid"
    NO_POLICY = "no-policy"
    """No `_mta-sts` TXT record (or none starting with v=STSv1): the domain has no policy."""
    FETCH_ERROR = "sts-policy-fetch-error"
    INVALID = "sts-policy-invalid"
    WEBPKI_INVALID = "sts-webpki-invalid"


@dataclass(frozen=True, slots=True)
class StsRecord:
    """The `_mta-sts` TXT record: the policy's version id."""

    id: str


class RecordInvalid(ValueError):
    """The TXT records are no usable MTA-STS record: senders then act as if there were no
    policy; the message says why."""


@dataclass(frozen=True, slots=True)
class Policy:
    """A valid policy: its mode, how long senders may cache it, and the MX patterns."""

    mode: Mode
    max_age: int
    mx: tuple[str, ...]

    def covers(self, host: str) -> bool:
        """Whether MX host `host` matches one of the policy's `mx` patterns."""
        return any(mx_matches(pattern, host) for pattern in self.mx)


class PolicyInvalid(ValueError):
    """The policy text breaks RFC 8461: what `sts-policy-invalid` reports."""


def parse_record(texts: list[str]) -> StsRecord | None:
    """The MTA-STS record among a name's TXT strings (each record's strings joined).

    None when no record starts with `v=STSv1` (no policy); RecordInvalid when more than one
    does or the one that does is malformed."""
    records = [t for t in texts if t.startswith("v=STSv1")]
    if not records:
        return None
    if len(records) > 1:
        raise RecordInvalid(f"{len(records)} TXT records start with v=STSv1; exactly one may")
    fields = _txt_fields(records[0])
    if fields is None:
        raise RecordInvalid(f"malformed record: {records[0][:200]!r}")
    if fields.get("v") != "STSv1":
        raise RecordInvalid("the record must start with v=STSv1;")
    record_id = fields.get("id")
    if record_id is None:
        raise RecordInvalid("the record has no id")
    if not _ID.fullmatch(record_id):
        raise RecordInvalid(f"id {record_id[:40]!r} is not 1-32 letters and digits")
    return StsRecord(record_id)


def _txt_fields(text: str) -> dict[str, str] | None:
    """`key=value` fields separated by `;` (a final `;` allowed); None when malformed."""
    parts = text.split(";")
    if parts and not parts[-1].strip():
        parts = parts[:-1]
    fields: dict[str, str] = {}
    for part in parts:
        match = _TXT_FIELD.fullmatch(part)
        if match is None:
            return None
        fields.setdefault(match.group(1), match.group(2))
    return fields


def parse_policy(body: bytes) -> Policy:
    """The policy from the body of `mta-sts.txt`; PolicyInvalid names what is wrong."""
    if len(body) > MAX_POLICY_BYTES:
        raise PolicyInvalid(f"policy larger than {MAX_POLICY_BYTES // 1024} KiB")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyInvalid("policy is not UTF-8 text") from None
    fields: dict[str, str] = {}
    patterns: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        match = _FIELD.fullmatch(line)
        if match is None:
            raise PolicyInvalid(f"not a `key: value` line: {line[:80]!r}")
        key, value = match.group(1), match.group(2)
        if key == "mx":
            if len(patterns) < MAX_PATTERNS:
                patterns.append(_pattern(value))
        else:
            fields.setdefault(key, value)
    return _policy(fields, tuple(patterns))


def _policy(fields: dict[str, str], patterns: tuple[str, ...]) -> Policy:
    if fields.get("version") != "STSv1":
        raise PolicyInvalid(f"version must be STSv1, got {fields.get('version')!r}")
    try:
        mode = Mode(fields.get("mode", ""))
    except ValueError:
        raise PolicyInvalid(
            f"mode must be enforce, testing or none, got {fields.get('mode')!r}"
        ) from None
    max_age_text = fields.get("max_age", "")
    if not max_age_text.isdigit() or len(max_age_text) > 10:
        raise PolicyInvalid(f"max_age must be a number of seconds, got {max_age_text!r}")
    max_age = int(max_age_text)
    if max_age > MAX_AGE_LIMIT:
        raise PolicyInvalid(f"max_age {max_age} is more than a year ({MAX_AGE_LIMIT})")
    if mode is not Mode.NONE and not patterns:
        raise PolicyInvalid(f"mode {mode.value} needs at least one mx pattern")
    return Policy(mode, max_age, patterns)


def _pattern(value: str) -> str:
    """An `mx` pattern: a host name, or `*.` and a name; lowercase, no final dot."""
    pattern = value.strip().lower().rstrip(".")
    name = pattern[2:] if pattern.startswith("*.") else pattern
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise PolicyInvalid(f"mx pattern {value[:80]!r} is not a host name or *.name")
    return pattern


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: a name matches itself; `*.example.org` matches exactly one more label
    on the left (`mx1.example.org`, not `a.b.example.org` nor `example.org`)."""
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, dot, rest = host.partition(".")
        return bool(first) and bool(dot) and rest == pattern[2:]
    return host == pattern
