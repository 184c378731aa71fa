"""`--storage.path=DIR`: every target's last result kept in an SQLite database in DIR, so a
restarted exporter serves what it knew and resumes each target's schedule instead of
probing every target at once.

A result is handed over without waiting on the disk: it goes to a buffer that keeps only
the newest result of each target (bounded, so a stuck disk cannot eat memory), and one
thread of its own encodes and commits them in batches, at most a second apart or every 100
results. WAL mode with synchronous=NORMAL: a killed process loses at most its last second
of results, a power cut perhaps a few commits more. A file that is not this exporter's, is
damaged, or has a newer schema is set aside as `<name>.corrupt-<time>` and a new one
started: stored results save probes, and are never a reason not to run. A directory that
cannot hold the database is, since results would be lost without a word at the next restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporter import resultcodec
from exporter.results import ProbeResult

log = logging.getLogger("exporter.storage")

#: The database's name in the directory.
DATABASE: Final = "results.sqlite3"
#: `format` in the meta table: what makes a database this exporter's.
FORMAT_MARKER: Final = "smtp-tls-exporter results"
#: `schema` in the meta table: the tables' layout. A newer one is set aside, not read.
SCHEMA: Final = 1
#: Results committed together at most this far apart...
BATCH_SECONDS: Final = 1.0
#: ...or as soon as this many wait.
BATCH_SIZE: Final = 100
#: Targets whose results may wait for the disk; a new target's result beyond is dropped.
MAX_PENDING: Final = 100_000
#: How long closing waits for the last batch.
_CLOSE_TIMEOUT: Final = 10.0
#: Write failures are logged at most this often (each is counted).
_LOG_EVERY: Final = 60.0
#: SQLite errors that say the file cannot be used here (permissions, another process, the
#: disk), not that it is damaged or foreign: these stop the start instead of a set-aside.
_ENVIRONMENT_ERRORS: Final = frozenset(
    {"SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED",
     "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_AUTH"}
)  # fmt: skip

_CREATE: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # One row per target: its last result (`resultcodec`, in the row's `format`), when that
    # probe started and finished (Unix seconds), and a digest of the settings it was made
    # with (`probe_digest`), so a target whose probe changed meanwhile starts afresh.
    "CREATE TABLE results (target TEXT PRIMARY KEY, probe_key TEXT NOT NULL,"
    " started REAL NOT NULL, finished REAL NOT NULL, format INTEGER NOT NULL,"
    " result BLOB NOT NULL)",
)


class StorageError(Exception):
    """The directory cannot hold the database: the exporter does not start."""


class _Unusable(Exception):
    """The file is no database of this exporter's that this version can read."""


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A target's last result as the database kept it."""

    target: str
    #: `probe_digest` of the target's probe settings when the result was made.
    probe_key: str
    result: ProbeResult


def probe_digest(key: tuple[object, ...]) -> str:
    """A short, stable digest of everything that changes what a probe measures."""
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32]


def open_storage(
    directory: str | Path,
    *,
    batch_seconds: float = BATCH_SECONDS,
    batch_size: int = BATCH_SIZE,
    max_pending: int = MAX_PENDING,
) -> tuple[ResultStorage, dict[str, StoredResult]]:
    """The storage in `directory` (made if missing), its writer running, and every result it
    holds. A damaged or foreign database is set aside, logged, and a new one made;
    `StorageError` when the directory or the file cannot be used at all."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise StorageError(f"{path}: cannot write there: {exc.strerror or exc}") from None
    file = path / DATABASE
    errors: Counter[str] = Counter()
    try:
        stored, unreadable = _load(file)
    except _Unusable as exc:
        moved = _set_aside(file)
        log.error(
            "stored results set aside, starting with none",
            extra={"fields": {"file": str(file), "problem": str(exc), "moved_to": str(moved)}},
        )
        errors["open"] += 1
        try:
            stored, unreadable = _load(file)
        except _Unusable as again:
            raise StorageError(f"{file}: a new database does not work: {again}") from None
    if unreadable:
        errors["read"] += unreadable
        log.warning(
            "stored results unreadable, dropped; those targets are probed afresh",
            extra={"fields": {"file": str(file), "results": unreadable}},
        )
    storage = ResultStorage(
        file, batch_seconds=batch_seconds, batch_size=batch_size, max_pending=max_pending
    )
    storage.errors_total.update(errors)
    storage.start()
    return storage, stored


def _connect(file: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(file, timeout=5.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def _load(file: Path) -> tuple[dict[str, StoredResult], int]:
    """Every readable result of the database (made when there is none) and how many rows
    were unreadable, which are deleted; `_Unusable` for a file that is not ours, is damaged
    or has another schema, `StorageError` when it cannot be opened or written."""
    try:
        connection = sqlite3.connect(file, timeout=5.0)
    except sqlite3.Error as exc:
        raise _classify(file, exc) from None
    try:
        _check_schema(connection)
        connection.execute("PRAGMA journal_mode=WAL")  # only once the file is known ours
        stored, bad = _read_rows(connection)
        if bad:
            with connection:
                connection.executemany("DELETE FROM results WHERE target = ?", bad)
        return stored, len(bad)
    except sqlite3.Error as exc:
        raise _classify(file, exc) from None
    finally:
        connection.close()


def _classify(file: Path, exc: sqlite3.Error) -> Exception:
    name = getattr(exc, "sqlite_errorname", "")
    if name in _ENVIRONMENT_ERRORS:
        return StorageError(f"{file}: {exc}")
    return _Unusable(f"{exc} ({name})" if name else str(exc))


def _check_schema(connection: sqlite3.Connection) -> None:
    """Make the tables in an empty file; else check the format marker and the schema."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if not tables:
        with connection:
            for statement in _CREATE:
                connection.execute(statement)
            connection.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("format", FORMAT_MARKER), ("schema", str(SCHEMA))],
            )
        return
    if "meta" not in tables:
        raise _Unusable(f"no meta table: not a database of this exporter (tables {sorted(tables)})")
    meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != FORMAT_MARKER:
        raise _Unusable(f"format {meta.get('format')!r}: not a database of this exporter")
    schema = str(meta.get("schema"))
    if schema != str(SCHEMA):
        newer = schema.isdigit() and int(schema) > SCHEMA
        which = "a newer exporter's" if newer else "unknown"
        raise _Unusable(f"schema version {schema} ({which}; this exporter reads {SCHEMA})")
    check = connection.execute("PRAGMA quick_check").fetchone()
    if check is None or check[0] != "ok":
        raise _Unusable(f"damaged: {check[0] if check else 'no answer from quick_check'}")


def _read_rows(connection: sqlite3.Connection) -> tuple[dict[str, StoredResult], list[tuple[str]]]:
    stored: dict[str, StoredResult] = {}
    bad: list[tuple[str]] = []
    rows = connection.execute("SELECT target, probe_key, format, result FROM results")
    for target, key, version, blob in rows:
        try:
            if not (isinstance(key, str) and isinstance(version, int) and isinstance(blob, bytes)):
                raise resultcodec.UnreadableRecord("columns of the wrong type")
            result = resultcodec.decode(blob, version)
        except resultcodec.UnreadableRecord as exc:
            log.debug(
                "stored result unreadable",
                extra={"fields": {"target": target, "problem": str(exc)}},
            )
            bad.append((target,))
            continue
        stored[target] = StoredResult(target, key, result)
    return stored, bad


def _set_aside(file: Path) -> Path:
    """Move the database (and its WAL, which belongs to it) to `<name>.corrupt-<time>`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = file.with_name(f"{file.name}.corrupt-{stamp}")
    number = 1
    while moved.exists():
        moved = file.with_name(f"{file.name}.corrupt-{stamp}-{number}")
        number += 1
    try:
        file.rename(moved)
        for suffix in ("-wal", "-shm"):
            side = file.with_name(file.name + suffix)
            if side.exists():
                side.rename(moved.with_name(moved.name + suffix))
    except OSError as exc:
        raise StorageError(f"{file}: cannot set the unreadable database aside: {exc}") from None
    return moved


@dataclass(slots=True)
class _Batch:
    """What the writer takes in one go: results by target, and the targets to keep."""

    results: dict[str, tuple[str, ProbeResult]]
    keep: frozenset[str] | None


class ResultStorage:
    """The database's writer: `save` and `retain` from the event loop return at once; one
    thread commits. Counters are read by `StorageCollector`."""

    def __init__(
        self,
        file: Path,
        *,
        batch_seconds: float = BATCH_SECONDS,
        batch_size: int = BATCH_SIZE,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.file = file
        self._batch_seconds = batch_seconds
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._wake = threading.Condition()
        self._pending: dict[str, tuple[str, ProbeResult]] = {}
        self._keep: frozenset[str] | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="storage-writer", daemon=True)
        self._connection: sqlite3.Connection | None = None
        self._logged_failure = -_LOG_EVERY
        #: Results committed since start.
        self.writes_total = 0
        #: By operation: `open` (a database set aside), `read` (a stored result dropped as
        #: unreadable), `write` (a batch that did not commit; it is tried again).
        self.errors_total: Counter[str] = Counter()
        #: Results never written because `max_pending` other targets' were waiting.
        self.dropped_total = 0
        #: Targets whose result and schedule came from the database.
        self.restored_targets = 0
        #: Unix time of the last commit; 0 before the first.
        self.last_commit = 0.0

    def start(self) -> None:
        self._thread.start()

    @property
    def pending(self) -> int:
        """Results waiting for the writer."""
        return len(self._pending)

    def save(self, target: str, probe_key: str, result: ProbeResult) -> None:
        """Keep `result` as `target`'s last (replacing one still waiting); never blocks on
        the disk."""
        with self._wake:
            if target not in self._pending and len(self._pending) >= self._max_pending:
                self.dropped_total += 1
                return
            self._pending[target] = (probe_key, result)
            if len(self._pending) in (1, self._batch_size):
                self._wake.notify()

    def retain(self, targets: frozenset[str]) -> None:
        """Drop every stored result but those of `targets` (the running config's)."""
        with self._wake:
            self._keep = targets
            self._pending = {n: item for n, item in self._pending.items() if n in targets}
            self._wake.notify()

    def close(self) -> None:
        """Write what waits, then stop the writer (waiting a while for a slow disk)."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(_CLOSE_TIMEOUT)
            if self._thread.is_alive():
                log.error(
                    "storage writer still busy at exit; its last results are lost",
                    extra={"fields": {"file": str(self.file), "results": self.pending}},
                )

    # --- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch, closing = self._next_batch()
            wrote = not (batch.results or batch.keep is not None) or self._write(batch)
            if not wrote and not closing:
                self._give_back(batch)
                self._pause()
                continue
            if closing:
                break
        if self._connection is not None:
            self._connection.close()

    def _next_batch(self) -> tuple[_Batch, bool]:
        """Wait for something to write, then up to `batch_seconds` for more; take it all."""
        with self._wake:
            while not self._pending and self._keep is None and not self._closing:
                self._wake.wait()
            deadline = time.monotonic() + self._batch_seconds
            while not self._closing and len(self._pending) < self._batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.wait(remaining)
            batch = _Batch(self._pending, self._keep)
            self._pending, self._keep = {}, None
            return batch, self._closing

    def _give_back(self, batch: _Batch) -> None:
        """A batch that did not commit waits again, behind any newer result of its targets."""
        with self._wake:
            for target, item in batch.results.items():
                if len(self._pending) < self._max_pending or target in self._pending:
                    self._pending.setdefault(target, item)
            if self._keep is None:
                self._keep = batch.keep

    def _pause(self) -> None:
        """After a failed write: wait a batch's time before trying again, unless closing."""
        with self._wake:
            if not self._closing:
                self._wake.wait(self._batch_seconds)

    def _write(self, batch: _Batch) -> bool:
        rows = list(self._rows(batch.results))
        try:
            if self._connection is None:
                self._connection = _connect(self.file)
            with self._connection:
                if batch.keep is not None:
                    stored = self._connection.execute("SELECT target FROM results").fetchall()
                    gone = [(name,) for (name,) in stored if name not in batch.keep]
                    self._connection.executemany("DELETE FROM results WHERE target = ?", gone)
                self._connection.executemany(
                    "INSERT OR REPLACE INTO results"
                    " (target, probe_key, started, finished, format, result)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            self.errors_total["write"] += 1
            self._log_failure(exc, len(rows))
            if self._connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._connection.close()
                self._connection = None
            return False
        self.writes_total += len(rows)
        self.last_commit = time.time()
        return True

    def _rows(
        self, results: dict[str, tuple[str, ProbeResult]]
    ) -> Iterator[tuple[str, str, float, float, int, bytes]]:
        for target, (key, result) in results.items():
            try:
                blob = resultcodec.encode(result)
            except (TypeError, ValueError):  # a bug costs this result only
                log.exception("result not storable", extra={"fields": {"target": target}})
                self.errors_total["write"] += 1
                continue
            yield target, key, result.started, result.finished, resultcodec.FORMAT, blob

    def _log_failure(self, exc: sqlite3.Error, results: int) -> None:
        now = time.monotonic()
        if now - self._logged_failure >= _LOG_EVERY:
            self._logged_failure = now
            log.error(
                "storing results failed; trying again",
                extra={"fields": {"file": str(self.file), "problem": str(exc), "results": results}},
            )


class StorageCollector(Collector):
    """The storage's own series: what was written, restored, dropped and failed."""

    def __init__(self, storage: ResultStorage) -> None:
        self._storage = storage

    def collect(self) -> Iterator[Metric]:
        storage = self._storage
        yield CounterMetricFamily(
            "smtp_tls_exporter_storage_writes",
            "Results written to the --storage.path database since start.",
            storage.writes_total,
        )
        errors = CounterMetricFamily(
            "smtp_tls_exporter_storage_errors",
            "Storage failures since start: open (an unreadable database set aside), read (a"
            " stored result dropped as unreadable), write (a commit that failed; retried).",
            labels=["operation"],
        )
        for operation in ("open", "read", "write"):
            errors.add_metric([operation], storage.errors_total.get(operation, 0))
        yield errors
        yield CounterMetricFamily(
            "smtp_tls_exporter_storage_dropped",
            "Results never written because too many others were waiting for the disk.",
            storage.dropped_total,
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_storage_pending_writes",
            "Results waiting to be written (one per target at most).",
            storage.pending,
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_storage_restored_targets",
            "Targets whose last result and schedule were restored from the database.",
            storage.restored_targets,
        )
        yield GaugeMetricFamily(
            "smtp_tls_exporter_storage_last_write_timestamp_seconds",
            "When results were last committed to the database, Unix seconds; 0 before.",
            storage.last_commit,
        )
