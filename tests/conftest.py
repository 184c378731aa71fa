"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postfix import PostfixServers, postfix_available
from tests.support.tools import unavailable


@pytest.fixture(scope="session")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixServers]:
    """A real Postfix with one listener per TLS policy (see ``tests/support/postfix.py``).

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
