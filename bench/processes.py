"""The processes a bench run starts (responder, exporter, blackbox_exporter, py-spy): started
with their output in a log file, stopped by their own process id, never by name."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
#: The checkout: children start here, so `python -m bench.responder` finds its package.
ROOT = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    """Something the bench needs did not happen; carries the relevant log."""


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """One child process; `stop()` ends it (SIGTERM, then SIGKILL) and is safe to repeat."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_file: Path,
        *,
        env: dict[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.log_file = log_file
        self._log: IO[bytes] = log_file.open("wb")
        self.started = time.time()
        self.proc: subprocess.Popen[bytes] = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_file.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, what: str) -> BenchError:
        return BenchError(f"{self.name}: {what}; log {self.log_file}:\n{self.log_tail()}")

    def read_line(self, timeout: float) -> str:
        """The next line the process prints on stdout (started with stdout_pipe)."""
        stdout = self.proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline().decode() if ready else ""
        if not line:
            raise self.fail(f"printed nothing within {timeout:.0f}s")
        return line.strip()

    def signal(self, signum: int) -> None:
        if self.alive:
            self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode

    def wait_http(self, url: str, timeout: float, interval: float = 0.05) -> float:
        """Poll `url` until it answers 200; the time that took since the start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise self.fail(f"exited with {self.proc.returncode} before {url} answered")
            if http_ok(url):
                return time.time() - self.started
            time.sleep(interval)
        raise self.fail(f"{url} did not answer 200 within {timeout:.0f}s")

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def http_get(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body: bytes = answer.read()
        return body


def python_module(module: str, *args: Any) -> list[str]:
    """argv running `module` with this interpreter (the project's virtualenv)."""
    return [sys.executable, "-m", module, *(str(a) for a in args)]


def exporter_argv(config_file: Path, port: int, *, traced: bool = False) -> list[str]:
    """The exporter's console script next to this interpreter (or the tracing wrapper)."""
    flags = [f"--config.file={config_file}", f"--web.listen-address={HOST}:{port}"]
    if traced:
        return python_module("bench.traced", *flags)
    script = Path(sys.executable).parent / "smtp-tls-exporter"
    if script.is_file():
        return [str(script), *flags]
    return python_module("exporter", *flags)
