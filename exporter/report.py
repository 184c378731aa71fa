"""A probe result for people: one JSON object, or a plain-text table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from exporter.domains import DomainCheck
from exporter.probe.suites import suite_name
from exporter.results import CertificateInfo, ProbeResult, SenderResult
from exporter.target import Target, TLSVersion


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _certificate_json(cert: CertificateInfo) -> dict[str, Any]:
    return {
        "subject": cert.subject,
        "issuer": cert.issuer,
        "serial": cert.serial,
        "sans": list(cert.sans),
        "not_before": _iso(cert.not_before),
        "not_after": _iso(cert.not_after),
        "key_type": cert.key_type,
        "key_bits": cert.key_bits,
        "signature_algorithm": cert.signature_algorithm,
        "fingerprint_sha256": cert.fingerprint_sha256,
        "verified": cert.verified,
        "verify_error": cert.verify_error.value if cert.verify_error else None,
        "verify_detail": cert.verify_detail or None,
        "chain": [
            {
                "subject": c.subject,
                "issuer": c.issuer,
                "not_before": _iso(c.not_before),
                "not_after": _iso(c.not_after),
                "fingerprint_sha256": c.fingerprint_sha256,
            }
            for c in cert.chain
        ],
        "chain_not_after": _iso(cert.chain_not_after),
    }


def to_json(target: Target, result: ProbeResult) -> dict[str, Any]:
    """The `check --json` object: stable keys, JSON types only."""
    return {
        "target": target.address,
        "name": target.name,
        "tls": target.tls.value,
        "servername": target.servername,
        "success": result.success,
        "error": result.error.value if result.error else None,
        "error_detail": result.error_detail or None,
        "starttls_advertised": result.starttls_advertised,
        "versions": {v.version.value: v.supported for v in result.versions},
        "version_details": {
            v.version.value: {
                "verdict": v.verdict.value,
                "detail": v.detail or None,
                "cipher": suite_name(v.cipher) if v.cipher is not None else None,
            }
            for v in result.versions
        },
        "negotiated": (
            {"version": result.negotiated.version, "cipher": result.negotiated.cipher}
            if result.negotiated
            else None
        ),
        "default_client_error": result.default_client_error or None,
        "senders": {
            s.profile: {
                "compatible": s.compatible,
                "version": _version_name(s.version),
                "cipher": suite_name(s.suite) if s.suite is not None else None,
                "failure": s.failure or None,
                "detail": s.detail or None,
            }
            for s in result.senders
        },
        "certificate": _certificate_json(result.certificate) if result.certificate else None,
        "duration_seconds": round(result.duration, 3),
        "timestamp": _iso(datetime.fromtimestamp(result.finished, UTC)),
    }


def _version_name(wire: int | None) -> str | None:
    version = TLSVersion.from_wire(wire) if wire else None
    return version.display if version else None


def _sender_text(sender: SenderResult) -> str:
    """A sender's verdict in a line: what it gets, or what keeps it out."""
    if sender.compatible:
        cipher = suite_name(sender.suite) if sender.suite is not None else ""
        return f"compatible    {_version_name(sender.version) or ''} {cipher}".rstrip()
    if sender.compatible is False:
        why = f"{sender.failure}: {sender.detail}" if sender.detail else sender.failure
        return f"INCOMPATIBLE  {why}"
    return f"unknown       {sender.detail}".rstrip()


def _rows(rows: list[tuple[str, str]], indent: str = "") -> list[str]:
    width = max((len(key) for key, _ in rows), default=0)
    return [f"{indent}{key.ljust(width)}  {value}".rstrip() for key, value in rows]


def to_table(target: Target, result: ProbeResult, now: datetime | None = None) -> str:
    """A short report for a terminal."""
    now = now or datetime.now(UTC)
    mode = target.tls.value
    if result.starttls_advertised is not None:
        mode += ", STARTTLS " + ("advertised" if result.starttls_advertised else "NOT advertised")
    status = "ok" if result.success else f"FAILED: {result.error.value if result.error else ''}"
    if result.error_detail:
        status += f" ({result.error_detail})"
    lines = _rows(
        [
            ("Target", f"{target.address} ({mode})"),
            ("Servername", target.servername),
            ("Probe", f"{status} in {result.duration:.2f}s"),
        ]
    )
    lines.append("")
    version_rows = []
    for v in result.versions:
        note = suite_name(v.cipher) if v.cipher is not None else v.detail
        version_rows.append((v.version.display, f"{v.verdict.value:9} {note}"))
    lines += _rows(version_rows)
    if result.negotiated:
        negotiated = f"{result.negotiated.version} {result.negotiated.cipher}"
    elif result.default_client_error:
        negotiated = f"handshake failed ({result.default_client_error})"
    else:  # it never got as far as a handshake: the probe's status says why
        negotiated = ""
    if negotiated:
        lines.append("")
        lines += _rows([("Default client", negotiated)])
    if result.senders:
        lines.append("")
        lines.append("Senders")
        lines += _rows([(s.profile, _sender_text(s)) for s in result.senders], indent="  ")
    cert = result.certificate
    if cert is not None:
        days = (cert.not_after - now).total_seconds() / 86400
        verified = (
            "yes"
            if cert.verified
            else "NO: " + (cert.verify_error.value if cert.verify_error else "")
        )
        if cert.verify_detail:
            verified += f" ({cert.verify_detail})"
        lines.append("")
        lines.append("Certificate")
        lines += _rows(
            [
                ("Subject", cert.subject),
                ("Issuer", cert.issuer),
                ("Names", ", ".join(cert.sans) or "-"),
                (
                    "Valid",
                    f"{cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d} "
                    f"({days:.0f} days left)",
                ),
                ("Key", f"{cert.key_type} {cert.key_bits}, {cert.signature_algorithm}"),
                ("Serial", cert.serial),
                ("SHA-256", cert.fingerprint_sha256),
                (
                    "Chain",
                    f"{len(cert.chain)} sent, earliest expiry {cert.chain_not_after:%Y-%m-%d}",
                ),
                ("Verified", verified),
            ],
            indent="  ",
        )
    return "\n".join(lines)


def domain_to_json(check: DomainCheck) -> dict[str, Any]:
    """`check --domain --json`: the look-up, and each MX host with its probe."""
    lookup = check.lookup
    return {
        "domain": lookup.domain,
        "status": lookup.status.value,
        "lookup_success": lookup.answered,
        "detail": lookup.detail or None,
        "problems": list(lookup.problems),
        "success": check.success,
        "hosts": [
            {
                "name": host.name,
                "preference": host.preference,
                "note": host.note or None,
                "probe": to_json(target, result),
            }
            for host, target, result in check.hosts
        ],
    }


def domain_to_table(check: DomainCheck, now: datetime | None = None) -> str:
    """The look-up for a terminal, then each MX host's own table."""
    lookup = check.lookup
    hosts = ", ".join(f"{h.name} ({h.preference})" for h, _, _ in check.hosts) or "none"
    rows = [
        ("Domain", lookup.domain),
        ("MX look-up", lookup.status.value + (f" ({lookup.detail})" if lookup.detail else "")),
        ("MX hosts", hosts),
    ]
    rows += [("Problem", problem) for problem in lookup.problems]
    rows += [("Note", f"{host.name}: {host.note}") for host, _, _ in check.hosts if host.note]
    parts = ["\n".join(_rows(rows))]
    for host, target, result in check.hosts:
        title = f"MX {host.preference} {host.name}"
        parts.append(f"{title}\n{'-' * len(title)}\n{to_table(target, result, now)}")
    return "\n\n".join(parts)
