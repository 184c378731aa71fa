"""Mail domains end to end: the exporter looks MX records up in a real DNS server (a private
NSD) and probes the MX hosts, which are the real Postfix listeners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.dns import DnsServer
from tests.support.exporter_process import (
    ExporterProcess,
    Scrape,
    listener_defaults,
    write_config,
)
from tests.support.postfix import PostfixServers

#: Every case a domain can be in, with what its series must say.
CASES = {
    "two.mail.test": ("ok", 1.0),
    "null.mail.test": ("null_mx", 1.0),
    "own.mail.test": ("no_mx", 1.0),
    "nothing.mail.test": ("no_mail_host", 1.0),
    "absent.mail.test": ("nxdomain", 0.0),
    "any.broken.test": ("servfail", 0.0),
    "cname.mail.test": ("ok", 1.0),
    "literal.mail.test": ("ok", 1.0),
    "hosted-a.mail.test": ("ok", 1.0),
    "hosted-b.mail.test": ("ok", 1.0),
}


def all_looked_up(scrape: Scrape) -> bool:
    return len(scrape.series("smtp_tls_mx_lookup_success")) == len(CASES)


@pytest.fixture(scope="module")
def watched(
    postfix: PostfixServers, dns_server: DnsServer, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    port = postfix.listener("all").port
    config = {
        "defaults": listener_defaults(postfix, labels={"team": "mail"}),
        "targets": [
            {"domain": domain, "port": port, "labels": {"partner": domain.split(".")[0]}}
            for domain in CASES
        ],
        "dns": {"servers": dns_server.servers, "timeout": "2s"},
    }
    path = write_config(tmp_path_factory.mktemp("domains") / "config.yaml", config)
    with ExporterProcess(path) as process:
        process.wait_for_scrape(all_looked_up, timeout=60, what="every domain looked up")
        hosts = {f"mail.test:{port}", f"mx2.mail.test:{port}", f"mx.hoster.test:{port}",
                 f"own.mail.test:{port}"}  # fmt: skip
        scrape = process.wait_for_scrape(
            lambda s: hosts <= s.targets(), timeout=90, what="every MX host probed"
        )
        yield port, scrape, process


@pytest.mark.postfix
@pytest.mark.parametrize("domain", sorted(CASES))
def test_every_domain_case_is_reported_as_such(watched: Any, domain: str) -> None:
    _, scrape, _ = watched
    status, success = CASES[domain]
    assert scrape.value("smtp_tls_mx_lookup_success", domain=domain) == success
    (info,) = scrape.series("smtp_tls_mx_lookup_info", domain=domain)
    assert info.labels["status"] == status, info.labels
    assert info.labels["partner"] == domain.split(".")[0]  # the domain's own labels
    assert info.labels["team"] == "mail"  # and those of `defaults`
    null = 1.0 if status == "null_mx" else 0.0
    assert scrape.value("smtp_tls_mx_null", domain=domain) == null


@pytest.mark.postfix
def test_mx_hosts_are_probed_and_joined_to_their_domains(watched: Any) -> None:
    port, scrape, _ = watched
    mx = {
        (s.labels["domain"], s.labels["target"], s.labels["preference"])
        for s in scrape.series("smtp_tls_mx_info")
    }
    assert {m for m in mx if m[0] == "two.mail.test"} == {
        ("two.mail.test", f"mail.test:{port}", "10"),
        ("two.mail.test", f"mx2.mail.test:{port}", "20"),
    }
    # No MX: the domain's own address receives its mail (RFC 5321 5.1).
    assert ("own.mail.test", f"own.mail.test:{port}", "0") in mx
    # A null MX, NXDOMAIN, SERVFAIL and a domain with no host: no MX host at all.
    for domain in ("null.mail.test", "absent.mail.test", "any.broken.test",
                   "nothing.mail.test"):  # fmt: skip
        assert not [m for m in mx if m[0] == domain]
        assert scrape.value("smtp_tls_mx_hosts", domain=domain) == 0
    # Hosted mail: one MX host for two domains is one target, probed once.
    hoster = f"mx.hoster.test:{port}"
    assert {m[0] for m in mx if m[1] == hoster} == {"hosted-a.mail.test", "hosted-b.mail.test"}
    assert len(scrape.series("smtp_tls_probe_success", target=hoster)) == 1
    # The MX hosts are probed like any target, with the MX name as servername.
    for target in (f"mail.test:{port}", f"mx2.mail.test:{port}", hoster):
        assert scrape.value("smtp_tls_version_supported", target=target, version="1.2") == 1
        assert scrape.value("smtp_tls_probe_success", target=target) == 1
    assert scrape.value("smtp_tls_cert_verified", target=f"mail.test:{port}") == 1
    # The MX host's series carry no domain labels: one host may serve many domains.
    (success,) = scrape.series("smtp_tls_probe_success", target=f"mail.test:{port}")
    assert "partner" not in success.labels


@pytest.mark.postfix
def test_what_is_wrong_with_the_records_is_said(watched: Any) -> None:
    _, scrape, _ = watched
    (cname,) = scrape.series("smtp_tls_mx_lookup_info", domain="cname.mail.test")
    assert "CNAME" in cname.labels["detail"]
    (literal,) = scrape.series("smtp_tls_mx_lookup_info", domain="literal.mail.test")
    assert "192.0.2.1" in literal.labels["detail"]
    mx = {s.labels["target"] for s in scrape.series("smtp_tls_mx_info", domain="literal.mail.test")}
    assert all(not t.startswith(("192.0.2.", "[192.0.2.")) for t in mx), mx
    (broken,) = scrape.series("smtp_tls_mx_lookup_info", domain="any.broken.test")
    assert "SERVFAIL" in broken.labels["detail"]


@pytest.mark.postfix
def test_the_exposition_is_valid_for_promtool(watched: Any) -> None:
    import shutil
    import subprocess

    from tests.support.tools import require_tool

    require_tool("promtool")
    _, scrape, _ = watched
    done = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "metrics"],
        input=scrape.text, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "error" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr


MOVING = """$ORIGIN moving.test.
$TTL 1
@ SOA ns hostmaster {serial} 3600 600 86400 1
@ NS ns
ns A 127.0.0.1
{mx}
stay MX 10 b
a A 127.0.0.1
b A 127.0.0.1
c A 127.0.0.1
"""


@pytest.mark.postfix
def test_a_changed_mx_set_is_followed_within_a_round(
    postfix: PostfixServers, tmp_path: Path
) -> None:
    """A new MX host is probed at once, one no domain names any more loses its series, one
    another domain still names keeps them; a failing look-up keeps the hosts found last."""
    from exporter.mx import MxStatus
    from tests.support.dns import DnsServer as Server

    port = postfix.listener("all").port
    first = MOVING.format(serial=1, mx="@ MX 10 a\n@ MX 20 b")
    with Server(tmp_path / "nsd", {"moving.test": first}) as server:
        config = {
            "defaults": listener_defaults(postfix, interval="3s", timeout="3s"),
            "targets": [
                {"domain": "moving.test", "port": port},
                {"domain": "stay.moving.test", "port": port},
            ],
            "dns": {"servers": server.servers[:1], "timeout": "1s"},
        }
        a, b, c = (f"{name}.moving.test:{port}" for name in "abc")

        def hosts_of(scrape: Scrape, domain: str) -> set[str]:
            return {s.labels["target"] for s in scrape.series("smtp_tls_mx_info", domain=domain)}

        with ExporterProcess(write_config(tmp_path / "config.yaml", config)) as process:
            process.wait_for_scrape(
                lambda s: {a, b} <= s.targets(), timeout=60, what="a and b probed"
            )
            server.replace_zone(
                "moving.test", MOVING.format(serial=2, mx="@ MX 10 c"), probe="moving.test"
            )
            scrape = process.wait_for_scrape(
                lambda s: c in s.targets() and a not in s.targets(),
                timeout=30,
                what="c probed and a gone",
            )
            assert hosts_of(scrape, "moving.test") == {c}
            assert hosts_of(scrape, "stay.moving.test") == {b}
            assert b in scrape.targets()  # stay.moving.test still names it
            assert not scrape.for_target(a)
            server.replace_zone(
                "moving.test", "$ORIGIN moving.test.\n@ SOA x\n", probe="moving.test"
            )
            scrape = process.wait_for_scrape(
                lambda s: s.value("smtp_tls_mx_lookup_success", domain="moving.test") == 0,
                timeout=30,
                what="the failing look-up",
            )
            (info,) = scrape.series("smtp_tls_mx_lookup_info", domain="moving.test")
            assert info.labels["status"] == MxStatus.SERVFAIL.value
            assert hosts_of(scrape, "moving.test") == {c}  # kept through the failure
            assert c in scrape.targets()


def run_check(*args: str) -> tuple[int, str, str]:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def check_flags(postfix: PostfixServers, dns_server: DnsServer) -> list[str]:
    return [
        "--port", str(postfix.listener("all").port),
        "--dns-server", dns_server.servers[0],
        "--ca-file", str(postfix.ca_file),
        "--ehlo-name", "client.test",
    ]  # fmt: skip


@pytest.mark.postfix
def test_check_a_domain_prints_each_mx_hosts_table(
    postfix: PostfixServers, dns_server: DnsServer
) -> None:
    import json

    port = postfix.listener("all").port
    flags = check_flags(postfix, dns_server)
    status, out, err = run_check("--domain", "two.mail.test", *flags, "--json")
    assert (status, err) == (0, "")
    report = json.loads(out)
    assert (report["domain"], report["status"], report["success"]) == ("two.mail.test", "ok", True)
    assert [(h["name"], h["preference"]) for h in report["hosts"]] == [
        ("mail.test", 10),
        ("mx2.mail.test", 20),
    ]
    for host in report["hosts"]:
        assert host["probe"]["target"] == f"{host['name']}:{port}"
        assert host["probe"]["servername"] == host["name"]
        assert host["probe"]["versions"]["1.2"] is True
    status, out, _ = run_check("--domain", "two.mail.test", *flags)
    assert status == 0
    assert "MX look-up  ok" in out
    assert "MX hosts    mail.test (10), mx2.mail.test (20)" in out
    assert f"MX 10 mail.test\n---------------\nTarget      mail.test:{port} (starttls" in out
    assert f"Target      mx2.mail.test:{port}" in out


@pytest.mark.postfix
@pytest.mark.parametrize(
    ("domain", "status", "exit_status"),
    [("null.mail.test", "null_mx", 0), ("absent.mail.test", "nxdomain", 1),
     ("any.broken.test", "servfail", 1)],
)  # fmt: skip
def test_check_a_domain_without_hosts_says_why(
    postfix: PostfixServers, dns_server: DnsServer, domain: str, status: str, exit_status: int
) -> None:
    code, out, _ = run_check("--domain", domain, *check_flags(postfix, dns_server))
    assert code == exit_status
    assert f"MX look-up  {status}" in out
    assert "MX hosts    none" in out
    assert "Target" not in out


@pytest.mark.postfix
def test_check_finds_out_a_name_is_a_mail_domain(
    postfix: PostfixServers, dns_server: DnsServer
) -> None:
    code, out, err = run_check("two.mail.test", *check_flags(postfix, dns_server))
    assert code == 0
    assert "two.mail.test has MX records but no address of its own" in err
    assert "MX hosts    mail.test (10), mx2.mail.test (20)" in out
    # A name with an address of its own is a server, as before, found through --dns-server.
    code, out, err = run_check("mail.test", *check_flags(postfix, dns_server))
    assert (code, err) == (0, "")
    assert "MX" not in out
    assert f"Target      mail.test:{postfix.listener('all').port} (starttls" in out


@pytest.mark.postfix
def test_a_name_server_that_never_answers_is_a_timeout(
    postfix: PostfixServers, tmp_path: Path
) -> None:
    from tests.support.dns import SilentDnsServer

    with SilentDnsServer() as silent:
        config = {
            "defaults": listener_defaults(postfix),
            "targets": [{"domain": "partner.example", "labels": {"partner": "acme"}}],
            "dns": {"servers": [silent.server], "timeout": "1s"},
        }
        with ExporterProcess(write_config(tmp_path / "config.yaml", config)) as process:
            scrape = process.wait_for_scrape(
                lambda s: s.value("smtp_tls_mx_lookup_success", domain="partner.example") == 0,
                timeout=30,
                what="the look-up timing out",
            )
    (info,) = scrape.series("smtp_tls_mx_lookup_info", domain="partner.example")
    assert info.labels["status"] == "timeout"
    assert info.labels["partner"] == "acme"
    assert scrape.value("smtp_tls_mx_hosts", domain="partner.example") == 0
    assert not scrape.series("smtp_tls_mx_info")


@pytest.mark.postfix
def test_the_status_page_lists_domains_with_their_hosts(watched: Any) -> None:
    from html.parser import HTMLParser

    port, _, process = watched
    page = process.get("/").text
    assert '<h2 id="domains">Mail domains</h2>' in page
    section = page.split('<h2 id="domains">', 1)[1]

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found += [v or "" for k, v in attrs if tag == "a" and k == "href"]

    links = Links()
    links.feed(section)
    assert f"target?name=mail.test%3A{port}" in links.found
    assert f"target?name=mx.hoster.test%3A{port}" in links.found
    row = section.split("<td>two.mail.test</td>", 1)[1].split("</tr>", 1)[0]
    assert "<td>ok</td>" in row
    assert ">mail.test</a> (ok)" in row
    absent = section.split("<td>absent.mail.test</td>", 1)[1].split("</tr>", 1)[0]
    assert "<td>nxdomain</td>" in absent
    assert "<td>none</td>" in absent
    assert process.get(f"/target?name=mail.test%3A{port}").status == 200
