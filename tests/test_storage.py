"""`--storage.path`: results as bytes and back, the database, its writer, and the files it
sets aside instead of failing."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import sqlite3
import ssl
import threading
import time
import types
import typing
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporter import resultcodec, storage
from exporter.dane import DaneResult
from exporter.probe import probe
from exporter.results import (
    AddressResult,
    CertificateInfo,
    ChainCertificate,
    Negotiated,
    ProbeResult,
    Reason,
    Verdict,
    VerifyError,
    VersionResult,
)
from exporter.storage import (
    DATABASE,
    ResultStorage,
    StorageCollector,
    StorageError,
    StoredResult,
    open_storage,
)
from exporter.target import Target, TLSVersion
from exporter.transcript import Recorder, unpack
from tests.support.certs import make_test_certs
from tests.support.inproc import Behaviour, InprocServer, tls_context

NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, 12, 30, 15, tzinfo=UTC)


def _transcript() -> bytes:
    recorder = Recorder()
    connection = recorder.connection("TLSv1.2")
    connection.server("220 mx1.example.org ESMTP")
    connection.client("EHLO probe.example.org")
    connection.server("250-mx1.example.org\r\n250 STARTTLS")
    connection.note("ServerHello TLS 1.2 \u2713 \u00e9")
    return recorder.pack()


def full_result() -> ProbeResult:
    """A result with every part there is: versions of every verdict, a certificate with a
    chain that does not verify, both address families, DANE, a transcript."""
    chain = (
        ChainCertificate("CN=mx1.example.org", "CN=CA", NOT_BEFORE, NOT_AFTER, "ab" * 32),
        ChainCertificate(
            "CN=CA", "CN=Root", NOT_BEFORE, datetime(2026, 6, 1, tzinfo=UTC), "cd" * 32
        ),
    )
    versions = (
        VersionResult(TLSVersion.SSL3, Verdict.REFUSED, "alert handshake_failure"),
        VersionResult(TLSVersion.TLS1_0, Verdict.ACCEPTED, "", 0x002F, checked=1_799_990_000.5),
        VersionResult(TLSVersion.TLS1_2, Verdict.ACCEPTED, "", 0xC02F),
        VersionResult(TLSVersion.TLS1_3, Verdict.UNKNOWN, "timed out"),
    )
    return ProbeResult(
        target="mx1",
        started=1_800_000_000.123456789,
        duration=0.1 + 0.2,
        success=True,
        error=None,
        error_detail="",
        starttls_advertised=True,
        versions=versions,
        negotiated=Negotiated("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
        certificate=CertificateInfo(
            subject="CN=mx1.example.org",
            issuer="CN=CA",
            serial="1f",
            sans=("mx1.example.org", "xn--bcher-kva.example"),
            not_before=NOT_BEFORE,
            not_after=NOT_AFTER,
            key_type="RSA",
            key_bits=2048,
            signature_algorithm="sha256WithRSAEncryption",
            fingerprint_sha256="ab" * 32,
            chain=chain,
            verified=False,
            verify_error=VerifyError.HOSTNAME_MISMATCH,
            verify_detail="not valid for mx1.example.net",
        ),
        default_client_error="",
        addresses=(
            AddressResult("192.0.2.1", True, None, versions, dane_matched=True),
            AddressResult("2001:db8::1", False, Reason.CONNECT_TIMEOUT, (), dane_matched=None),
        ),
        dane=DaneResult(
            matched=True,
            matching=("3 1 1 " + "ef" * 32,),
            usable=2,
            rollover_ready=False,
            detail="",
        ),
        transcript=_transcript(),
    )


def failed_result() -> ProbeResult:
    return ProbeResult.unreached(
        "mx2.example.org:25",
        (TLSVersion.TLS1_2, TLSVersion.TLS1_3),
        started=1_800_000_001.0,
        duration=30.000001,
        reason=Reason.GREETING_TIMEOUT,
        detail="no greeting within 30s \u2014 \x00\x1b[31m",
        transcript=b"\x00\xff not even a transcript",
    )


def no_starttls_result() -> ProbeResult:
    return dataclasses.replace(
        failed_result(),
        success=True,
        error=None,
        error_detail="",
        starttls_advertised=False,
        versions=(VersionResult(TLSVersion.TLS1_2, Verdict.REFUSED, "no STARTTLS"),),
        default_client_error="STARTTLS not offered",
        transcript=b"",
    )


# --- the codec --------------------------------------------------------------------------


@pytest.mark.parametrize("make", [full_result, failed_result, no_starttls_result])
def test_every_shape_of_result_reads_back_equal(make: typing.Callable[[], ProbeResult]) -> None:
    result = make()
    again = resultcodec.decode(resultcodec.encode(result))
    assert again == result
    assert again.finished == result.finished  # smtp_tls_probe_timestamp_seconds, exactly
    assert unpack(again.transcript) == unpack(result.transcript)


def test_datetimes_keep_their_zone() -> None:
    east = timezone(timedelta(hours=2))
    cert = full_result().certificate
    assert cert is not None
    shifted = dataclasses.replace(cert, not_after=datetime(2027, 1, 1, tzinfo=east))
    result = dataclasses.replace(full_result(), certificate=shifted)
    again = resultcodec.decode(resultcodec.encode(result))
    assert again.certificate is not None
    assert again.certificate.not_after.utcoffset() == timedelta(hours=2)
    assert again == result


def test_a_real_probe_reads_back_equal(tmp_path: Path) -> None:
    certs = make_test_certs(tmp_path)
    context = tls_context(str(certs.rsa.cert), str(certs.rsa.key), ssl.TLSVersion.TLSv1_2)
    with InprocServer(Behaviour(context=context), host="127.0.0.9") as server:
        target = Target(
            host=server.host,
            port=server.port,
            servername="mail.test",
            ehlo_name="probe.test",
            timeout=10.0,
            ca_file=str(certs.ca_pem),
            versions=(TLSVersion.TLS1_1, TLSVersion.TLS1_2, TLSVersion.TLS1_3),
        )
        result = asyncio.run(probe(target))
    assert result.success, result
    assert result.certificate is not None
    assert result.certificate.chain
    assert result.transcript
    assert resultcodec.decode(resultcodec.encode(result)) == result


SUPPORTED_LEAVES = (str, int, float, bool, bytes, datetime)


def _kinds(kind: Any, seen: set[type]) -> Iterator[str]:
    """Problems: annotated types in the result tree the codec has no reading for."""
    origin = typing.get_origin(kind)
    if origin is types.UnionType or origin is typing.Union:
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(options) != 1:
            yield f"{kind}: only `X | None` unions are read"
        for option in options:
            yield from _kinds(option, seen)
    elif origin is tuple:
        args = typing.get_args(kind)
        if len(args) != 2 or args[1] is not Ellipsis:
            yield f"{kind}: only `tuple[X, ...]` is read"
        yield from _kinds(args[0], seen)
    elif isinstance(kind, type) and dataclasses.is_dataclass(kind) and kind not in seen:
        seen.add(kind)
        for hint in typing.get_type_hints(kind).values():
            yield from _kinds(hint, seen)
    elif kind not in seen and not (
        isinstance(kind, type) and (issubclass(kind, enum.Enum) or kind in SUPPORTED_LEAVES)
    ):
        yield f"{kind!r} has no reading"


def test_every_field_of_a_result_has_a_reading() -> None:
    """A field of a new kind must reach the codec before it reaches a user's database."""
    seen: set[type] = set()
    assert list(_kinds(ProbeResult, seen)) == []
    assert {AddressResult, CertificateInfo, ChainCertificate, DaneResult} <= seen


def _json(result: ProbeResult) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(zlib.decompress(resultcodec.encode(result)))
    return loaded


def _pack(value: object) -> bytes:
    return zlib.compress(json.dumps(value).encode())


def _edited(**changes: Any) -> bytes:
    value = _json(full_result()) | changes
    return _pack(value)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not packed JSON"),
        (b"SQLite format 3\x00 garbage", "not packed JSON"),
        (zlib.compress(b"\xff\xfe not json"), "not packed JSON"),
        (_pack([1, 2, 3]), "an object expected"),
        (_pack(None), "an object expected"),
        (_edited(started="yesterday"), "result.started: str where float belongs"),
        (_edited(success=1), "result.success: int where bool belongs"),
        (_edited(error="no_such_reason"), "result.error"),
        (_edited(transcript="not base64!"), "result.transcript"),
        (_edited(versions={"1.2": True}), "result.versions: a list expected"),
        (_edited(extra=1), "unknown keys ['extra']"),
        (_edited(negotiated=["TLSv1.2"]), "result.negotiated: an object expected"),
        (zlib.compress(b"[" * 100_000 + b"]" * 100_000), "not packed JSON"),
        (zlib.compress(b" " * (17 << 20)), "at most 16 MiB"),
        (resultcodec.encode(full_result())[:-3], "not one whole zlib stream"),
    ],
)
def test_what_is_not_a_result_is_unreadable(data: bytes, problem: str) -> None:
    with pytest.raises(resultcodec.UnreadableRecord, match=problem.replace("[", r"\[")):
        resultcodec.decode(data)


def test_a_missing_field_reads_as_its_default_or_not_at_all() -> None:
    value = _json(full_result())
    del value["transcript"]
    assert resultcodec.decode(_pack(value)).transcript == b""
    del value["target"]
    with pytest.raises(resultcodec.UnreadableRecord, match="target missing"):
        resultcodec.decode(_pack(value))


def test_a_record_of_another_format_is_unreadable() -> None:
    data = resultcodec.encode(full_result())
    with pytest.raises(resultcodec.UnreadableRecord, match="format 2"):
        resultcodec.decode(data, resultcodec.FORMAT + 1)


# --- the database -----------------------------------------------------------------------


def _open(directory: Path, **tuning: Any) -> tuple[ResultStorage, dict[str, StoredResult]]:
    return open_storage(directory, batch_seconds=tuning.pop("batch_seconds", 0.05), **tuning)


def test_results_survive_a_close_and_reopen(tmp_path: Path) -> None:
    saved, stored = _open(tmp_path / "data")
    assert stored == {}
    saved.save("mx1", "key1", full_result())
    saved.save("mx2", "key2", failed_result())
    saved.close()
    assert saved.writes_total == 2
    again, stored = _open(tmp_path / "data")
    again.close()
    assert stored == {
        "mx1": StoredResult("mx1", "key1", full_result()),
        "mx2": StoredResult("mx2", "key2", failed_result()),
    }
    with sqlite3.connect(tmp_path / "data" / DATABASE) as db:
        meta = dict(db.execute("SELECT key, value FROM meta"))
        rows = db.execute("SELECT target, started, finished, format FROM results ORDER BY 1")
        assert list(rows) == [
            ("mx1", full_result().started, full_result().finished, resultcodec.FORMAT),
            ("mx2", failed_result().started, failed_result().finished, resultcodec.FORMAT),
        ]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert meta == {"format": storage.FORMAT_MARKER, "schema": str(storage.SCHEMA)}


def test_the_newest_result_of_a_target_is_kept(tmp_path: Path) -> None:
    saved, _ = _open(tmp_path, batch_seconds=60.0)
    older = failed_result()
    newer = dataclasses.replace(older, started=older.started + 300)
    saved.save("mx2", "key", older)
    saved.save("mx2", "key", newer)
    assert saved.pending == 1
    saved.close()  # writes what waits, without waiting out the batch
    _, stored = _open(tmp_path)
    assert stored["mx2"].result == newer


def test_retain_keeps_only_the_running_targets(tmp_path: Path) -> None:
    saved, _ = _open(tmp_path)
    for name in ("a", "b", "c"):
        saved.save(name, "key", failed_result())
    saved.close()
    saved, stored = _open(tmp_path)
    assert set(stored) == {"a", "b", "c"}
    saved.save("d", "key", failed_result())
    saved.retain(frozenset({"a", "d"}))
    saved.save("c", "key", failed_result())  # removed meanwhile: a late result is kept
    saved.close()
    _, stored = _open(tmp_path)
    assert set(stored) == {"a", "c", "d"}


def test_a_stored_result_that_does_not_read_is_dropped_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved, _ = _open(tmp_path)
    saved.save("good", "key", full_result())
    saved.save("bad", "key", full_result())
    saved.close()
    with sqlite3.connect(tmp_path / DATABASE) as db:
        db.execute("UPDATE results SET result = ? WHERE target = 'bad'", (b"garbage",))
        db.execute(
            "INSERT INTO results VALUES ('newer', 'key', 1.0, 2.0, ?, ?)",
            (resultcodec.FORMAT + 1, resultcodec.encode(full_result())),
        )
        db.execute("INSERT INTO results VALUES (7, 'key', 1.0, 2.0, 1, 'text, not bytes')")
    with caplog.at_level(logging.WARNING, logger="exporter.storage"):
        reopened, stored = _open(tmp_path)
    reopened.close()
    assert set(stored) == {"good"}
    assert reopened.errors_total == {"read": 3}
    [record] = caplog.records
    assert record.fields == {"file": str(tmp_path / DATABASE), "results": 3}  # type: ignore[attr-defined]
    with sqlite3.connect(tmp_path / DATABASE) as db:
        assert db.execute("SELECT target FROM results").fetchall() == [("good",)]


# --- files that are not ours, or damaged --------------------------------------------------


def _filled(directory: Path, count: int = 200) -> Path:
    saved, _ = _open(directory)
    for index in range(count):
        saved.save(f"mx{index}", "key", full_result())
    saved.close()
    return directory / DATABASE


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _garbage(file: Path) -> None:
    file.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64)


def _foreign(file: Path) -> None:
    file.unlink()
    with sqlite3.connect(file) as db:
        db.execute("CREATE TABLE mail (id INTEGER PRIMARY KEY, subject TEXT)")
        db.execute("INSERT INTO mail (subject) VALUES ('hello')")
    db.close()


def _foreign_meta(file: Path) -> None:
    file.unlink()
    with sqlite3.connect(file) as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('format', 'someone else')")
    db.close()


def _odd_meta(file: Path) -> None:
    file.unlink()
    with sqlite3.connect(file) as db:
        db.execute("CREATE TABLE meta (name TEXT)")
    db.close()


def _newer(file: Path) -> None:
    with sqlite3.connect(file) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(storage.SCHEMA + 1),))
    db.close()


def _damaged_page(file: Path) -> None:
    data = bytearray(file.read_bytes())
    page = 4096
    data[3 * page : 5 * page] = b"\xa5" * (2 * page)
    file.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (_truncate, "database disk image is malformed"),
        (_garbage, "file is not a database"),
        (_foreign, "no meta table: not a database of this exporter"),
        (_foreign_meta, "format 'someone else': not a database of this exporter"),
        (_odd_meta, "no such column"),
        (_newer, f"schema version {storage.SCHEMA + 1} (a newer exporter's"),
        (_damaged_page, "database disk image is malformed"),
    ],
)
def test_an_unusable_file_is_set_aside_and_a_new_one_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, spoil: Any, problem: str
) -> None:
    file = _filled(tmp_path)
    spoil(file)
    spoiled = file.read_bytes()
    with caplog.at_level(logging.INFO, logger="exporter.storage"):
        saved, stored = _open(tmp_path)
    assert stored == {}
    assert saved.errors_total == {"open": 1}
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["file"] == str(file)
    assert problem in fields["problem"]
    moved = Path(fields["moved_to"])
    assert moved.parent == tmp_path
    assert moved.name.startswith(f"{DATABASE}.corrupt-")
    assert moved.read_bytes() == spoiled  # kept as it was, for a person to look at
    # The new database works.
    saved.save("mx1", "key", failed_result())
    saved.close()
    again, stored = _open(tmp_path)
    again.close()
    assert set(stored) == {"mx1"}
    assert again.errors_total == {}


def test_two_files_set_aside_in_one_second_keep_their_own_names(tmp_path: Path) -> None:
    file = tmp_path / DATABASE
    for _ in range(3):
        _garbage(file)
        _open(tmp_path)[0].close()
    assert len(list(tmp_path.glob(f"{DATABASE}.corrupt-*[!lm]"))) == 3


def test_an_empty_file_is_a_new_database(tmp_path: Path) -> None:
    (tmp_path / DATABASE).write_bytes(b"")
    saved, stored = _open(tmp_path)
    saved.close()
    assert stored == {}
    assert saved.errors_total == {}
    assert list(tmp_path.glob("*.corrupt-*")) == []


def test_a_directory_that_cannot_hold_the_database_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot write there: Not a directory"):
        open_storage(blocker / "data")
    (tmp_path / "data" / DATABASE).mkdir(parents=True)
    with pytest.raises(StorageError, match="unable to open database file"):
        open_storage(tmp_path / "data")


# --- the writer ---------------------------------------------------------------------------


def test_a_stuck_disk_blocks_nothing_and_holds_little(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck, writing = threading.Event(), threading.Event()
    real_write = ResultStorage._write

    def slow_write(self: ResultStorage, batch: Any) -> bool:
        writing.set()
        stuck.wait(10)
        return real_write(self, batch)

    monkeypatch.setattr(ResultStorage, "_write", slow_write)
    saved, _ = _open(tmp_path, batch_seconds=0.01, max_pending=3)
    saved.save("first", "key", failed_result())
    assert writing.wait(5)  # the writer holds "first" and waits for the disk
    start = time.monotonic()
    for round_ in range(100):
        for name in ("a", "b", "c", "d"):
            saved.save(name, "key", dataclasses.replace(failed_result(), duration=round_))
    assert time.monotonic() - start < 0.5
    assert saved.pending == 3  # one per target, at most three targets
    assert saved.dropped_total == 100  # "d" found no room
    stuck.set()
    saved.close()
    _, stored = _open(tmp_path)
    assert set(stored) == {"first", "a", "b", "c"}
    assert stored["a"].result.duration == 99  # the newest


def test_a_failed_write_is_counted_and_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_connect = storage._connect

    def impatient(file: Path) -> sqlite3.Connection:
        connection = real_connect(file)
        connection.execute("PRAGMA busy_timeout = 10")
        return connection

    monkeypatch.setattr(storage, "_connect", impatient)
    saved, _ = _open(tmp_path, batch_seconds=0.02)
    blocker = sqlite3.connect(tmp_path / DATABASE, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    saved.save("mx1", "key", failed_result())
    deadline = time.monotonic() + 5
    while saved.errors_total["write"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert saved.errors_total["write"] >= 2
    assert saved.writes_total == 0
    blocker.execute("ROLLBACK")
    blocker.close()
    while saved.writes_total < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert saved.writes_total == 1
    assert saved.last_commit > 0
    saved.close()
    assert set(_open(tmp_path)[1]) == {"mx1"}


def test_the_storage_series(tmp_path: Path) -> None:
    saved, _ = _open(tmp_path)
    saved.save("mx1", "key", failed_result())
    saved.restored_targets = 4
    saved.close()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StorageCollector(saved))
    lines = generate_latest(registry).decode().splitlines()
    samples = [line for line in lines if not line.startswith("#")]
    assert "smtp_tls_exporter_storage_writes_total 1.0" in samples
    assert 'smtp_tls_exporter_storage_errors_total{operation="open"} 0.0' in samples
    assert 'smtp_tls_exporter_storage_errors_total{operation="read"} 0.0' in samples
    assert 'smtp_tls_exporter_storage_errors_total{operation="write"} 0.0' in samples
    assert "smtp_tls_exporter_storage_dropped_total 0.0" in samples
    assert "smtp_tls_exporter_storage_pending_writes 0.0" in samples
    assert "smtp_tls_exporter_storage_restored_targets 4.0" in samples
    [commit] = [s for s in samples if s.startswith("smtp_tls_exporter_storage_last_write_")]
    assert float(commit.split()[1]) == pytest.approx(time.time(), abs=60)


# --- the running exporter -------------------------------------------------------------------


def _config(tmp_path: Path, *extra: str) -> Path:
    path = tmp_path / "config.yaml"
    lines = ["defaults: {ehlo_name: probe.test, interval: 1h}", "targets:"]
    lines += [f"  - {{host: 127.0.0.1, port: {port}, name: {name}}}" for name, port in PORTS]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


PORTS = (("same", 2525), ("moved", 2526))


def _installed(
    tmp_path: Path, stored_for: dict[str, int], *extra: str
) -> tuple[Any, ResultStorage]:
    """An exporter on a config of PORTS, installed over a storage holding a result for each
    name in `stored_for`, made by a probe of that port."""
    from exporter.app import Exporter
    from exporter.config import load_config
    from exporter.scheduler import probe_key

    saved, _ = _open(tmp_path / "data")
    for name, port in stored_for.items():
        then = Target(host="127.0.0.1", port=port, name=name, ehlo_name="probe.test")
        result = dataclasses.replace(failed_result(), target=name, started=time.time() - 60)
        saved.save(name, storage.probe_digest(probe_key(then)), result)
    saved.close()
    reopened, stored = _open(tmp_path / "data")
    config_file = _config(tmp_path, *extra)
    exporter = Exporter(str(config_file), 1, storage=reopened)
    exporter.resume_from(stored)
    exporter.install(load_config(str(config_file)))
    return exporter, reopened


def test_the_exporter_restores_results_of_unchanged_targets_only(tmp_path: Path) -> None:
    async def case() -> None:
        exporter, saved = _installed(tmp_path, {"same": 2525, "moved": 25, "gone": 2527})
        assert exporter.store.ready
        restored = exporter.store.result("same")
        assert restored is not None
        assert restored.target == "same"
        assert exporter.store.result("moved") is None  # another server now: probed afresh
        assert exporter.store.probes_total == 0
        assert saved.restored_targets == 1
        await exporter.scheduler.stop()
        saved.close()

    asyncio.run(case())
    _, stored = _open(tmp_path / "data")
    assert set(stored) == {"same", "moved"}  # the target gone from the config is dropped


def test_results_of_mx_hosts_wait_for_their_domains_first_look_up(tmp_path: Path) -> None:
    async def case() -> None:
        exporter, saved = _installed(
            tmp_path, {"same": 2525, "mx1.partner.test:25": 25}, "  - {domain: partner.test}"
        )
        assert exporter.store.result("same") is not None
        await exporter.scheduler.stop()
        saved.close()

    asyncio.run(case())
    _, stored = _open(tmp_path / "data")
    assert set(stored) == {"same", "mx1.partner.test:25"}


def test_the_exporter_stores_every_result_with_its_probe(tmp_path: Path) -> None:
    from exporter.scheduler import probe_key

    async def case() -> None:
        exporter, saved = _installed(tmp_path, {})
        [target] = [t for t, _ in exporter.store.snapshot() if t.name == "moved"]
        exporter._on_result(target, failed_result())
        await exporter.scheduler.stop()
        saved.close()
        assert saved.writes_total == 1
        _, stored = _open(tmp_path / "data")
        assert stored["moved"].probe_key == storage.probe_digest(probe_key(target))
        assert stored["moved"].result == failed_result()

    asyncio.run(case())
