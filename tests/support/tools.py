"""Real tools the tests drive: found on PATH, or skipped, except under CI where they must run."""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """True under CI (CI=true), where a test that needs a real component must run."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> None:
    """Skip the test for `reason`; under CI, fail it instead."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, hint: str = "") -> str:
    """Path of a command-line tool; skip without it, but fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed" + (f" ({hint})" if hint else ""))
        raise AssertionError("unreachable")  # pytest.skip/fail raise
    return path
