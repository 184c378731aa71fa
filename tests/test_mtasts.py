"""MTA-STS records and policies, and TLS-RPT records, read as senders read them."""

from __future__ import annotations

import pytest

from exporter import mtasts, tlsrpt
from exporter.mtasts import Mode, Policy, PolicyInvalid, RecordInvalid, StsRecord

GOOD = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmx: *.example.net\r\n"
    b"max_age: 604800\r\n"
)


def test_a_good_policy_and_what_it_covers() -> None:
    policy = mtasts.parse_policy(GOOD)
    assert policy == Policy(Mode.ENFORCE, 604800, ("mail.example.org", "*.example.net"))
    assert policy.covers("MAIL.example.org.")
    assert policy.covers("mx1.example.net")
    assert not policy.covers("a.b.example.net")  # one label only
    assert not policy.covers("example.net")
    assert not policy.covers("mail.example.org.evil.test")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (GOOD.replace(b"STSv1", b"STSv2"), "version must be STSv1"),
        (GOOD.replace(b"enforce", b"strict"), "mode must be enforce, testing or none"),
        (GOOD.replace(b"604800", b"31557601"), "more than a year"),
        (GOOD.replace(b"604800", b"-1"), "max_age must be a number"),
        (b"version: STSv1\nmode: enforce\nmax_age: 86400\n", "needs at least one mx pattern"),
        (GOOD.replace(b"mail.example.org", b"mail..example.org"), "is not a host name"),
        (GOOD + b"this is not a field\n", "not a `key: value` line"),
        (b"\xff\xfe", "not UTF-8"),
        (b"x" * (64 * 1024 + 1), "larger than 64 KiB"),
    ],
    ids=["version", "mode", "max-age-big", "max-age-negative", "no-mx", "bad-mx",
         "garbage-line", "not-utf8", "too-large"],
)  # fmt: skip
def test_invalid_policies_say_why(body: bytes, problem: str) -> None:
    with pytest.raises(PolicyInvalid, match=problem.replace("`", ".").replace("(", ".")):
        mtasts.parse_policy(body)


def test_mode_none_needs_no_mx_and_lf_lines_are_read() -> None:
    policy = mtasts.parse_policy(b"version: STSv1\nmode: none\nmax_age: 0\n")
    assert policy == Policy(Mode.NONE, 0, ())


def test_the_record() -> None:
    assert mtasts.parse_record(["v=spf1 -all"]) is None
    assert mtasts.parse_record(["v=STSv1; id=20240101T000000;"]) == StsRecord("20240101T000000")
    assert mtasts.parse_record(["v=STSv1;id=abc"]) == StsRecord("abc")
    with pytest.raises(RecordInvalid, match="2 TXT records"):
        mtasts.parse_record(["v=STSv1; id=a", "v=STSv1; id=b"])
    with pytest.raises(RecordInvalid, match="no id"):
        mtasts.parse_record(["v=STSv1;"])
    with pytest.raises(RecordInvalid, match="not 1-32 letters"):
        mtasts.parse_record(["v=STSv1; id=" + "a" * 33])
    with pytest.raises(RecordInvalid, match="not 1-32 letters"):
        mtasts.parse_record(["v=STSv1; id=2024-01-01"])


def test_tlsrpt_records() -> None:
    record = tlsrpt.parse_record(
        ["v=TLSRPTv1; rua=mailto:tls@example.org,https://reports.example.org/tls"]
    )
    assert record is not None
    assert record.rua == ("mailto:tls@example.org", "https://reports.example.org/tls")
    assert tlsrpt.parse_record(["v=DMARC1; p=none"]) is None
    for texts, problem in [
        (["v=TLSRPTv1; rua=mailto:a@example.org", "v=TLSRPTv1; rua=mailto:b@example.org"],
         "2 TXT records"),
        (["v=TLSRPTv1;"], "no rua"),
        (["v=TLSRPTv1; rua=ftp://example.org/"], "neither mailto: nor https:"),
        (["v=TLSRPTv1; rua=mailto:not-an-address"], "not a mailto: address"),
        (["v=TLSRPTv1; rua=https:///path"], "has no host"),
        (["v=TLSRPTv1; rua"], "malformed field"),
    ]:  # fmt: skip
        with pytest.raises(tlsrpt.RecordInvalid, match=problem):
            tlsrpt.parse_record(texts)
