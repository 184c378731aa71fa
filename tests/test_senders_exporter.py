"""Senders through the running exporter: the Postfix listeners, one of which accepts TLS 1.2
only with static-RSA CBC suites, probed with Exchange Online's and Exchange 2016's hellos."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.exporter_process import (
    ExporterProcess,
    listener_defaults,
    target_entry,
    write_config,
)
from tests.support.postfix import PostfixServers


@pytest.mark.postfix
def test_accepting_tls_12_is_not_compatible_with_exchange_online(
    postfix: PostfixServers, tmp_path: Path
) -> None:
    senders = ["exchange-online", "exchange-2016"]
    config = {
        "defaults": listener_defaults(postfix, senders=senders),
        "targets": [target_entry(postfix, "all"), target_entry(postfix, "legacy_ciphers")],
        "important_senders": ["exchange-online"],
    }
    with ExporterProcess(write_config(tmp_path / "config.yaml", config)) as process:
        scrape = process.wait_for_scrape(
            lambda s: len(s.series("smtp_tls_sender_info")) == 4,
            timeout=60,
            what="both senders' verdicts on both listeners",
        )
    legacy = "legacy_ciphers"
    assert scrape.value("smtp_tls_version_supported", target=legacy, version="1.2") == 1
    assert scrape.value("smtp_tls_sender_compatible", target=legacy,
                        profile="exchange-online") == 0  # fmt: skip
    (info,) = scrape.series("smtp_tls_sender_info", target=legacy, profile="exchange-online")
    assert info.labels["result"] == "incompatible"
    assert info.labels["failure"] in ("suite", "alert")
    assert scrape.value("smtp_tls_sender_compatible", target=legacy,
                        profile="exchange-2016") == 1  # fmt: skip
    (old,) = scrape.series("smtp_tls_sender_info", target=legacy, profile="exchange-2016")
    assert old.labels["version"] == "TLSv1.2"
    assert old.labels["cipher"] in ("TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_256_CBC_SHA")
    assert scrape.value("smtp_tls_sender_compatible", target="all",
                        profile="exchange-online") == 1  # fmt: skip
    important = {(s.labels["target"], s.labels["profile"])
                 for s in scrape.series("smtp_tls_sender_important")}  # fmt: skip
    assert important == {("all", "exchange-online"), (legacy, "exchange-online")}
