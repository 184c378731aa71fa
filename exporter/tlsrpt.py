"""TLS reporting (RFC 8460) records: where senders send their reports; no I/O.

A domain that publishes MTA-STS or DANE wants to hear when senders fail them; the
`_smtp._tls.<domain>` TXT record says where (`rua`: mailto: or https: addresses). A broken
record means the domain hears nothing, which is worth an alert of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

#: Report addresses kept from one record.
MAX_URIS: Final = 16
_FIELD = re.compile(r"[ \t]*([A-Za-z0-9_.-]+)=([^;]*?)[ \t]*")
_MAILBOX = re.compile(r"[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+")


@dataclass(frozen=True, slots=True)
class TlsRptRecord:
    """A valid record: the report addresses, in order."""

    rua: tuple[str, ...]


class RecordInvalid(ValueError):
    """The TXT records are no usable TLS-RPT record; the message says why."""


def parse_record(texts: list[str]) -> TlsRptRecord | None:
    """The TLS-RPT record among a name's TXT strings (each record's strings joined): None
    when none starts with `v=TLSRPTv1`, RecordInvalid when more than one does or the one
    that does is malformed."""
    records = [t for t in texts if t.startswith("v=TLSRPTv1")]
    if not records:
        return None
    if len(records) > 1:
        raise RecordInvalid(f"{len(records)} TXT records start with v=TLSRPTv1; exactly one may")
    parts = records[0].split(";")
    if parts and not parts[-1].strip():
        parts = parts[:-1]
    fields: dict[str, str] = {}
    for part in parts:
        match = _FIELD.fullmatch(part)
        if match is None:
            raise RecordInvalid(f"malformed field {part.strip()[:80]!r}")
        fields.setdefault(match.group(1), match.group(2))
    if fields.get("v") != "TLSRPTv1":
        raise RecordInvalid("the record must start with v=TLSRPTv1;")
    if "rua" not in fields:
        raise RecordInvalid("the record has no rua (where reports go)")
    uris = tuple(uri.strip() for uri in fields["rua"].split(",") if uri.strip())
    if not uris:
        raise RecordInvalid("rua is empty")
    for uri in uris:
        _check_uri(uri)
    return TlsRptRecord(uris[:MAX_URIS])


def _check_uri(uri: str) -> None:
    """A report address: mailto: with a mailbox, or https: with a host."""
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "mailto":
        if not _MAILBOX.fullmatch(unquote(rest.split("?", 1)[0])):
            raise RecordInvalid(f"rua {uri[:80]!r} is not a mailto: address")
        return
    if scheme.lower() == "https":
        try:
            parts = urlsplit(uri)
        except ValueError:
            raise RecordInvalid(f"rua {uri[:80]!r} is not an https: URL") from None
        if not parts.hostname:
            raise RecordInvalid(f"rua {uri[:80]!r} has no host")
        return
    raise RecordInvalid(f"rua {uri[:80]!r} is neither mailto: nor https:")
