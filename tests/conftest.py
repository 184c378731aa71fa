"""Shared fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests.servers` must import under plain `pytest` too, not only `python -m pytest`.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.servers.postfix import PostfixServers, postfix_available  # noqa: E402
from tests.servers.tools import unavailable  # noqa: E402


@pytest.fixture(scope="session")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixServers]:
    """A real Postfix with one listener per TLS policy (see ``tests/servers/postfix.py``).

    Skipped where Postfix is not installed or the tests do not run as root; with
    ``CI=true`` that is a failure instead, so CI never passes by skipping.
    """
    reason = postfix_available()
    if reason is not None:
        unavailable(reason)
    servers = PostfixServers(tmp_path_factory.mktemp("postfix"))
    servers.start()
    try:
        yield servers
    finally:
        servers.stop()
