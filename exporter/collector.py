"""Stored results → Prometheus metric families. No I/O: `collect()` reads what is in memory.

Every per-target sample carries `target` plus the target's own labels; targets may carry
different extra labels, so samples are added with per-sample label sets.
"""

from __future__ import annotations

import ipaddress
import platform
import re
import ssl
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.names import format_address
from exporter.policies import DomainPolicy
from exporter.policydns import DnssecStatus, RecordStatus
from exporter.probe.suites import suite_name
from exporter.results import AddressResult, CertificateInfo, ProbeResult, Reason
from exporter.store import DomainStatus, ResultStore
from exporter.target import Target, TLSVersion

#: Longest label value taken from what a server said.
MAX_LABEL_VALUE = 256


def bounded(value: str) -> str:
    """A server-controlled string cut to a sane label length."""
    return value if len(value) <= MAX_LABEL_VALUE else value[: MAX_LABEL_VALUE - 1] + "…"


#: Punctuation around a word of a reply: `[192.0.2.1]`, `<id@host>`, `(2001:db8::1),`.
_WRAPPING = "[]()<>{},;'\""
#: A time of day (`20:37:05`, `20:37:05.123+0000`): greetings and rate-limit replies carry it.
_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")


def _is_address(word: str) -> bool:
    """An IP address, also with a port (`192.0.2.1:25`, `[2001:db8::1]:25`) or a zone."""
    host = word.split("%", 1)[0]
    if host.count(":") == 1 and "." in host:  # IPv4 with a port
        host = host.split(":", 1)[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _varies(token: str) -> bool:
    """Whether a word of a reply changes from one connection to the next: a session or
    queue ID (long, with several digits), a time of day. Addresses and host names stay."""
    word = token.strip(_WRAPPING)
    if word.startswith("[") or "]:" in word:
        word = word.replace("[", "").replace("]", "")
    if _is_address(word):
        return False
    if _TIME_OF_DAY.fullmatch(word):
        return True
    return len(word) >= 16 and sum(c.isdigit() for c in word) >= 3 and "/" not in word


def stable_detail(text: str) -> str:
    """The server's words with per-connection IDs masked, cut to label length.

    Big providers put a fresh ID in every reply ("... a640c23a62f3a-...si1234567ejc.123 -
    gsmtp"); as a label value that would make a new series on every failed probe. The log
    and the status page keep the words as they were.
    """
    return bounded(" ".join("…" if _varies(t) else t for t in text.split()))


#: One family of per-target samples: name, type, help text.
FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("smtp_tls_version_supported", "gauge",
     "1 when the server accepts this TLS version, 0 when it refuses it; absent when unknown."),
    ("smtp_tls_version_checked_timestamp_seconds", "gauge",
     "When this version's verdict was reached, in Unix seconds: under legacy_interval, "
     "older than the last probe for SSLv3, TLS 1.0 and 1.1; absent when unknown."),
    ("smtp_tls_probe_success", "gauge",
     "1 when the last probe reached a verdict for every configured version and read the "
     "certificate where TLS was offered."),
    ("smtp_tls_probe_error_info", "info",
     "Why the last probe failed: reason and the server's words."),
    ("smtp_tls_starttls_advertised", "gauge", "1 when EHLO listed STARTTLS, 0 when not."),
    ("smtp_tls_negotiated_info", "info",
     "Version and cipher a default modern client negotiates with the server."),
    ("smtp_tls_cert_not_after_timestamp_seconds", "gauge",
     "The leaf certificate's notAfter, in Unix seconds."),
    ("smtp_tls_cert_not_before_timestamp_seconds", "gauge",
     "The leaf certificate's notBefore, in Unix seconds."),
    ("smtp_tls_cert_chain_not_after_timestamp_seconds", "gauge",
     "The earliest notAfter of every certificate the server sent, in Unix seconds."),
    ("smtp_tls_cert_verified", "gauge",
     "1 when the chain leads to a trust anchor, every certificate is within its validity "
     "and the leaf matches the servername."),
    ("smtp_tls_cert_verify_error_info", "info",
     "Why the certificate does not verify."),
    ("smtp_tls_cert_info", "info", "Details of the leaf certificate."),
    ("smtp_tls_probe_duration_seconds", "gauge", "How long the last probe took."),
    ("smtp_tls_probe_timestamp_seconds", "gauge",
     "When the last probe finished, in Unix seconds."),
    ("smtp_tls_backoff_seconds", "gauge",
     "While the server rate-limits the probes: how long after the last probe's start the "
     "next one starts (the interval, doubled for each rate-limited probe in a row)."),
    ("smtp_tls_address_version_supported", "gauge",
     "For a host with IPv4 and IPv6 addresses, per address (the first of each family): 1 "
     "accepts this version, 0 refuses it; absent when unknown."),
    ("smtp_tls_address_probe_success", "gauge",
     "For a host with IPv4 and IPv6 addresses, per address: 1 when its probe reached a "
     "verdict for every version."),
    ("smtp_tls_address_dane_tlsa_match", "gauge",
     "For a host with IPv4 and IPv6 addresses and DNSSEC-validated TLSA records, per "
     "address: 1 when the chain it presented matches them, 0 when not."),
    ("smtp_tls_addresses_agree", "gauge",
     "For a host with IPv4 and IPv6 addresses: 1 when every address reached the same "
     "verdict for every version, 0 when one differs or reached none."),
    ("smtp_tls_dane_tlsa_match", "gauge",
     "Where the host has DNSSEC-validated TLSA records (DANE for SMTP): 1 when the chain "
     "it presented matches a DANE-TA or DANE-EE record, 0 when not."),
    ("smtp_tls_dane_rollover_ready", "gauge",
     "1 when the TLSA records would still match after the leaf's key changes (a DANE-TA "
     "record for the issuer, or a DANE-EE record for another key)."),
    ("smtp_tls_dane_info", "info", "The TLSA records that matched, or why none did."),
    ("smtp_tls_sender_compatible", "gauge",
     "1 when the server completes a handshake with what this sender offers (its versions, "
     "suites, groups, signature algorithms), 0 when it does not; absent when unknown."),
    ("smtp_tls_sender_info", "info",
     "What this sender gets: the version and cipher the server chose, or what failed."),
    ("smtp_tls_sender_important", "gauge",
     "1 for the senders listed under important_senders: their incompatibility alerts."),
)  # fmt: skip

#: Sample sink: (sample name, labels, value).
Sink = Callable[[str, dict[str, str], float], None]


def _target_labels(target: Target) -> dict[str, str]:
    labels = dict(target.labels)
    labels["target"] = target.name
    return labels


def add_result(sink: Sink, target: Target, result: ProbeResult) -> None:
    base = _target_labels(target)

    def add(name: str, value: float, **extra: str) -> None:
        sink(name, {**base, **extra} if extra else base, value)

    _add_versions(add, result)
    add("smtp_tls_probe_success", float(result.success))
    if result.error is not None:
        add(
            "smtp_tls_probe_error_info",
            1.0,
            reason=result.error.value,
            detail=stable_detail(result.error_detail),
        )
    if result.starttls_advertised is not None:
        add("smtp_tls_starttls_advertised", float(result.starttls_advertised))
    if result.negotiated is not None:
        add(
            "smtp_tls_negotiated_info",
            1.0,
            version=bounded(result.negotiated.version),
            cipher=bounded(result.negotiated.cipher),
        )
    if result.certificate is not None:
        _add_certificate(add, result.certificate)
    add("smtp_tls_probe_duration_seconds", result.duration)
    add("smtp_tls_probe_timestamp_seconds", result.finished)
    if result.backoff:
        add("smtp_tls_backoff_seconds", result.backoff)
    if len(result.addresses) > 1:
        _add_addresses(add, result.addresses)
    _add_senders(add, target, result)
    if result.dane is not None:
        add("smtp_tls_dane_tlsa_match", float(result.dane.matched))
        add("smtp_tls_dane_rollover_ready", float(result.dane.rollover_ready))
        add("smtp_tls_dane_info", 1.0, detail=bounded(result.dane.detail))


def _add_senders(add: Callable[..., None], target: Target, result: ProbeResult) -> None:
    """Each sender's verdict and what it gets; which of them are important."""
    for sender in result.senders:
        if sender.compatible is not None:
            add("smtp_tls_sender_compatible", float(sender.compatible), profile=sender.profile)
        version = TLSVersion.from_wire(sender.version) if sender.version else None
        add(
            "smtp_tls_sender_info",
            1.0,
            profile=sender.profile,
            result=sender.compatibility,
            version=version.display if version else "",
            cipher=suite_name(sender.suite) if sender.suite is not None else "",
            failure=sender.failure,
            detail=bounded(sender.detail),
        )
        if sender.profile in target.important_senders:
            add("smtp_tls_sender_important", 1.0, profile=sender.profile)


def _add_versions(add: Callable[..., None], result: ProbeResult) -> None:
    """Each version's verdict, and when it was reached; nothing for an unknown one."""
    for version in result.versions:
        if version.supported is not None:
            name = version.version.value
            add("smtp_tls_version_supported", float(version.supported), version=name)
    for version in result.versions:
        if version.supported is not None:
            checked = result.finished if version.checked is None else version.checked
            add("smtp_tls_version_checked_timestamp_seconds", checked,
                version=version.version.value)  # fmt: skip


def _add_certificate(add: Callable[..., None], cert: CertificateInfo) -> None:
    """The leaf certificate's dates, verification and details."""
    add("smtp_tls_cert_not_after_timestamp_seconds", cert.not_after.timestamp())
    add("smtp_tls_cert_not_before_timestamp_seconds", cert.not_before.timestamp())
    add("smtp_tls_cert_chain_not_after_timestamp_seconds", cert.chain_not_after.timestamp())
    add("smtp_tls_cert_verified", float(cert.verified))
    if cert.verify_error is not None:
        add(
            "smtp_tls_cert_verify_error_info",
            1.0,
            reason=cert.verify_error.value,
            detail=bounded(cert.verify_detail),
        )
    add(
        "smtp_tls_cert_info",
        1.0,
        subject=bounded(cert.subject),
        issuer=bounded(cert.issuer),
        serial=bounded(cert.serial),
        fingerprint_sha256=cert.fingerprint_sha256,
        key_type=bounded(cert.key_type),
        key_bits=str(cert.key_bits),
        signature_algorithm=bounded(cert.signature_algorithm),
        sans=bounded(",".join(cert.sans)),
    )


def _add_addresses(add: Callable[..., None], addresses: tuple[AddressResult, ...]) -> None:
    """Per address of a dual-stack host, and whether they agree."""
    for found in addresses:
        add("smtp_tls_address_probe_success", float(found.success), address=found.address)
        if found.dane_matched is not None:
            add("smtp_tls_address_dane_tlsa_match", float(found.dane_matched),
                address=found.address)  # fmt: skip
        for v in found.versions:
            if v.supported is not None:
                add("smtp_tls_address_version_supported", float(v.supported),
                    address=found.address, version=v.version.value)  # fmt: skip
    verdicts = {tuple(v.verdict for v in found.versions) for found in addresses}
    agree = len(verdicts) == 1 and all(found.success for found in addresses)
    add("smtp_tls_addresses_agree", float(agree))


class ResultCollector(Collector):
    """Every target's last result, as the families in `FAMILIES`."""

    def __init__(self, store: ResultStore) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        # Info families are named without `_info`; their samples carry it.
        families = {
            name: Metric(name.removesuffix("_info") if kind == "info" else name, doc, kind)
            for name, kind, doc in FAMILIES
        }
        for target, result in self._store.snapshot():
            if result is not None:
                add_result(lambda n, ls, v: families[n].add_sample(n, ls, v), target, result)
        return families.values()


class ExporterCollector(Collector):
    """The exporter's own state: probes and failures so far, schedule, config, build."""

    def __init__(self, store: ResultStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        store = self._store
        yield CounterMetricFamily(
            "smtp_tls_exporter_probes", "Probes finished since start.", store.probes_total
        )
        failures = CounterMetricFamily(
            "smtp_tls_exporter_probe_failures",
            "Failed probes since start, by reason.",
            labels=["reason"],
        )
        for reason in Reason:
            failures.add_metric([reason.value], store.failures_total.get(reason, 0))
        yield failures
        yield GaugeMetricFamily(
            "smtp_tls_exporter_schedule_delay_seconds",
            "How late the most recently started probe started, past its due time.",
            store.schedule_delay_seconds,
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_overdue_probes",
            "Probes past their due time still waiting for a free slot.",
            store.overdue_probes,
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_probes_running", "Probes running now.", store.probes_running
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_probe_concurrency",
            "The most probes that may run at once: --probe.concurrency, or by default what"
            " the open files limit allows up to the memory budget, never more than the"
            " open files allow.",
            store.probe_concurrency,
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_event_loop_lag_seconds",
            "How late the event loop runs, smoothed; while it is 0.1 s or more (a busy CPU), no"
            " new probe starts unless none is running.",
            store.event_loop_lag_seconds,
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_targets",
            "Targets in the running config (this shard's, under --shard).",
            store.target_count,
        )
        reload = store.reload
        yield GaugeMetricFamily(
            "smtp_tls_exporter_config_last_reload_successful",
            "1 when the last load of the config file succeeded, else 0.",
            reload.successful,
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_config_last_reload_success_timestamp_seconds",
            "When the config file was last loaded successfully, in Unix seconds.",
            reload.last_success,
        )
        yield from _shard_families(store)
        yield InfoMetricFamily(
            "smtp_tls_exporter_build",
            "Exporter, Python and OpenSSL versions.",
            {
                "version": __version__,
                "python_version": platform.python_version(),
                "openssl_version": ssl.OPENSSL_VERSION,
            },
        )


def _shard_families(store: ResultStore) -> Iterator[Metric]:
    """Under `--shard=I/N`: which shard this process is, and the whole config's size."""
    shard = store.shard
    if shard is None:
        return
    yield InfoMetricFamily(
        "smtp_tls_exporter_shard",
        "This process's shard of the config's targets (--shard=I/N).",
        {"shard": str(shard.index), "shards": str(shard.count)},
    )
    yield GaugeMetricFamily(
        "smtp_tls_exporter_config_targets",
        "Targets in the config file, every shard's; smtp_tls_exporter_targets counts this shard's.",
        shard.config_targets,
    )


#: The families of mail domains (targets given by `domain`): name, type, help text.
DOMAIN_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("smtp_tls_mx_info", "info",
     "1 for every MX host of the domain as probed; join host series on `target`."),
    ("smtp_tls_mx_lookup_success", "gauge",
     "1 when the domain's MX look-up got an answer (also no MX, or a null MX); 0 when the "
     "DNS failed (NXDOMAIN, SERVFAIL, timeout)."),
    ("smtp_tls_mx_lookup_info", "info",
     "The MX look-up's status (ok, no_mx, null_mx, no_mail_host, nxdomain, servfail, "
     "timeout, error) and what it found wrong."),
    ("smtp_tls_mx_null", "gauge",
     "1 when the domain publishes a null MX (RFC 7505): it accepts no mail."),
    ("smtp_tls_mx_hosts", "gauge", "MX hosts the domain's mail goes to, as probed."),
    ("smtp_tls_mx_lookup_timestamp_seconds", "gauge",
     "When the domain's MX records were last looked up, in Unix seconds."),
    ("smtp_tls_mta_sts_policy_valid", "gauge",
     "Where the domain publishes an _mta-sts record: 1 when senders get a valid MTA-STS "
     "policy, 0 when the record or the policy is broken."),
    ("smtp_tls_mta_sts_info", "info",
     "How far the domain's MTA-STS got: valid, or the RFC 8460 result type (sts-policy-"
     "fetch-error, sts-policy-invalid, sts-webpki-invalid), record-invalid, dns-failure."),
    ("smtp_tls_mta_sts_policy_info", "info", "The valid MTA-STS policy's id and mode."),
    ("smtp_tls_mta_sts_policy_max_age_seconds", "gauge",
     "How long senders may cache the valid MTA-STS policy."),
    ("smtp_tls_mta_sts_mx_covered", "gauge",
     "Per MX host of a domain with a valid MTA-STS policy: 1 when an mx pattern of the "
     "policy covers it, 0 when senders enforcing the policy will not deliver to it."),
    ("smtp_tls_mta_sts_policy_changed_without_id", "gauge",
     "1 when the MTA-STS policy changed but the _mta-sts record's id did not: senders "
     "keep the old policy until it expires."),
    ("smtp_tls_tlsrpt_record_valid", "gauge",
     "Where the domain publishes a _smtp._tls record: 1 valid, 0 broken (no reports)."),
    ("smtp_tls_tlsrpt_info", "info", "The TLS-RPT record's status and what is wrong."),
    ("smtp_tls_dnssec_secure", "gauge",
     "1 when DNSSEC validates the domain's MX answer, 0 when it is unsigned or bogus; "
     "absent without a validating resolver in dns.servers."),
    ("smtp_tls_dnssec_info", "info", "What DNSSEC says of the domain's MX answer."),
    ("smtp_tls_dane_tlsa_lookup_info", "info",
     "Per MX host: its TLSA look-up (secure, insecure, bogus, no_records, unknown, error)."),
)  # fmt: skip


def add_domain(sink: Sink, status: DomainStatus) -> None:
    """The series of one mail domain, with the domain's own labels."""
    lookup = status.lookup
    if lookup is None:
        return
    domain = status.domain
    labels = {"domain": domain.domain, **dict(domain.labels)}

    def add(name: str, value: float, **extra: str) -> None:
        sink(name, {**labels, **extra}, value)

    port = domain.template.port
    for host in status.hosts:
        add("smtp_tls_mx_info", 1.0, target=format_address(host.host, port),
            preference=str(host.preference))  # fmt: skip
    add("smtp_tls_mx_lookup_success", float(lookup.answered))
    findings = [lookup.detail, *lookup.problems, *(h.note for h in status.hosts if h.note)]
    detail = "; ".join(part for part in findings if part)
    add("smtp_tls_mx_lookup_info", 1.0, status=lookup.status.value, detail=bounded(detail))
    add("smtp_tls_mx_null", float(lookup.status.value == "null_mx"))
    add("smtp_tls_mx_hosts", float(len(status.hosts)))
    if status.checked is not None:
        add("smtp_tls_mx_lookup_timestamp_seconds", status.checked)
    if status.policy is not None:
        _add_policy(add, status, status.policy)


def _add_policy(add: Callable[..., None], status: DomainStatus, policy: DomainPolicy) -> None:
    """MTA-STS, TLS-RPT, DNSSEC and the MX hosts' TLSA look-ups of one domain."""
    port = status.domain.template.port
    _add_mta_sts(add, status, policy, port)
    rpt = policy.tlsrpt
    if rpt.status is not RecordStatus.ABSENT:
        add("smtp_tls_tlsrpt_record_valid", float(rpt.status is RecordStatus.VALID))
        add("smtp_tls_tlsrpt_info", 1.0, status=rpt.status.value, detail=bounded(rpt.detail))
    signed = policy.dnssec.status
    if signed in (DnssecStatus.SECURE, DnssecStatus.INSECURE, DnssecStatus.BOGUS):
        add("smtp_tls_dnssec_secure", float(signed is DnssecStatus.SECURE))
    add("smtp_tls_dnssec_info", 1.0, status=signed.value, detail=bounded(policy.dnssec.detail))
    for host, lookup in policy.tlsa:
        add("smtp_tls_dane_tlsa_lookup_info", 1.0, target=format_address(host, port),
            status=lookup.status.value, detail=bounded(lookup.detail))  # fmt: skip


def _add_mta_sts(
    add: Callable[..., None], status: DomainStatus, policy: DomainPolicy, port: int
) -> None:
    record = policy.sts_record
    if record.status is RecordStatus.ABSENT:
        return
    fetched = policy.sts_fetch
    if record.status is not RecordStatus.VALID:
        result = "record-invalid" if record.status is RecordStatus.INVALID else "dns-failure"
        detail = record.detail
    else:
        assert fetched is not None  # a valid record is always followed by a fetch
        result, detail = fetched.result.value, fetched.detail
    valid = policy.policy
    add("smtp_tls_mta_sts_policy_valid", float(valid is not None))
    add("smtp_tls_mta_sts_info", 1.0, result=result, detail=bounded(detail))
    if valid is None or record.record is None:
        return
    add("smtp_tls_mta_sts_policy_info", 1.0, id=record.record.id, mode=valid.mode.value)
    add("smtp_tls_mta_sts_policy_max_age_seconds", float(valid.max_age))
    add("smtp_tls_mta_sts_policy_changed_without_id", float(policy.sts_changed_without_id))
    for host in status.hosts:
        add("smtp_tls_mta_sts_mx_covered", float(valid.covers(host.host)),
            target=format_address(host.host, port))  # fmt: skip


class DomainCollector(Collector):
    """Every mail domain's last MX look-up and its hosts, as `DOMAIN_FAMILIES`."""

    def __init__(self, store: ResultStore) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        families = {
            name: Metric(name.removesuffix("_info") if kind == "info" else name, doc, kind)
            for name, kind, doc in DOMAIN_FAMILIES
        }
        for status in self._store.domains():
            add_domain(lambda n, ls, v: families[n].add_sample(n, ls, v), status)
        return [family for family in families.values() if family.samples]
