"""The life cycle shared by the servers the tests run as subprocesses (exporter, Prometheus).

Each one is started with its output in a log file, counts as up once ``/-/ready`` answers 200,
is stopped with SIGTERM (SIGKILL if it lingers), and fails a test with the tail of its log, so
a failure shows what the process itself said.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, ClassVar, Self, TypeVar

_T = TypeVar("_T")


class ServiceProcess(ABC):
    """A subprocess serving HTTP; use as a context manager so it is always stopped."""

    #: What failure messages call the process.
    name: ClassVar[str] = "process"
    #: Raised when the process does not get where a test waits for it.
    error: ClassVar[type[AssertionError]] = AssertionError
    #: Seconds between two checks of :meth:`wait_until` unless the caller says otherwise.
    poll_interval: ClassVar[float] = 0.2
    #: The path answering 200 once the process serves.
    ready_path: ClassVar[str] = "/-/ready"

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    @abstractmethod
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the process."""

    @abstractmethod
    def start(self, ready_timeout: float = 20.0) -> Self:
        """Start the process and wait until it is ready."""

    # --- life cycle -----------------------------------------------------------------

    def _launch(
        self, argv: Sequence[str], *, ready_timeout: float, cwd: Path | None = None
    ) -> None:
        """Run ``argv`` with stdout and stderr in the log file, then wait for readiness;
        a process that never gets ready is stopped, so no test leaves one behind."""
        self._log = self.log_file.open("wb")
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        try:
            self.wait_until(
                self._ready, timeout=ready_timeout, what=f"{self.ready_path} to answer 200"
            )
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + self.ready_path, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:  # refused while starting, or an error status (HTTPError)
            return False

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it lingers; the exit status (None if never started)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return None if proc is None else proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # --- log ------------------------------------------------------------------------

    def log(self) -> str:
        """Everything the process wrote so far."""
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        return self.log().splitlines()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, for failure messages."""
        return "\n".join(self.log_lines()[-lines:])

    # --- waiting --------------------------------------------------------------------

    def wait_until(
        self,
        condition: Callable[[], _T | None],
        *,
        timeout: float,
        what: str,
        interval: float | None = None,
    ) -> _T:
        """Poll until ``condition()`` is truthy; its value. Fails (with the log tail) after
        ``timeout`` seconds, or as soon as the process has exited: it will not get there."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                raise self.error(
                    f"{self.name} exited with {self.proc.returncode} while waiting for {what}; "
                    f"log:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise self.error(f"no {what} after {timeout:.0f}s; log:\n{self.log_tail()}")
            time.sleep(self.poll_interval if interval is None else interval)
