"""scripts/run.sh and scripts/venv.sh: pip runs on the first start, then only when needed.

The real scripts run in a copy of the checkout whose .venv holds stand-ins for `python` and
`smtp-tls-exporter` that log their arguments: what matters is whether pip is invoked, and
the project's own .venv stays untouched.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
STAMP = ".venv/.install-stamp"
SHIM = """#!/bin/sh
echo "{name} $*" >>"$(dirname "$0")/../../calls.log"
case " $* " in *" -e "*) exit "${{FAIL_INSTALL:-0}}" ;; esac
"""
UPGRADE_PIP = "python -m pip install -q --disable-pip-version-check --upgrade pip"


def install(spec: str) -> str:
    return (
        "python -W ignore:Editable installation -m pip install -q"
        f" --disable-pip-version-check -e {spec}"
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The scripts and pyproject.toml, and a .venv whose python and exporter log each call."""
    require_tool("bash")
    (tmp_path / "scripts").mkdir()
    for script in ("run.sh", "venv.sh"):
        shutil.copy2(REPO_ROOT / "scripts" / script, tmp_path / "scripts" / script)
    shutil.copy2(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "smtp-tls-exporter"):
        (bin_dir / name).write_text(SHIM.format(name=name))
        (bin_dir / name).chmod(0o755)
    return tmp_path


def calls(checkout: Path, *command: str, fail_install: bool = False) -> list[str]:
    """Run a script of the checkout; the calls its stand-ins saw (and forget them)."""
    log = checkout / "calls.log"
    log.unlink(missing_ok=True)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "FAIL_INSTALL": "1" if fail_install else "0"}
    done = subprocess.run(
        [str(checkout / "scripts" / command[0]), *command[1:]],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert (done.returncode != 0) == fail_install, done.stderr
    return log.read_text().splitlines() if log.exists() else []


def test_a_second_start_runs_no_pip(checkout: Path) -> None:
    exporter = "smtp-tls-exporter --config.file=config.example.yaml"
    assert calls(checkout, "run.sh") == [UPGRADE_PIP, install("."), exporter]
    assert calls(checkout, "run.sh") == [exporter]
    assert calls(checkout, "run.sh", "my.yaml", "--log.level=debug") == [
        "smtp-tls-exporter --config.file=my.yaml --log.level=debug"
    ]
    assert calls(checkout, "run.sh", "--log.level=debug") == [f"{exporter} --log.level=debug"]


def test_a_changed_pyproject_installs_again(checkout: Path) -> None:
    calls(checkout, "venv.sh", "python3", ".")
    with (checkout / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# a new dependency\n")
    assert calls(checkout, "venv.sh", "python3", ".") == [UPGRADE_PIP, install(".")]
    assert calls(checkout, "venv.sh", "python3", ".") == []


def test_extras_install_when_missing_only(checkout: Path) -> None:
    calls(checkout, "venv.sh", "python3", ".")
    assert calls(checkout, "venv.sh", "python3", ".[test]") == [UPGRADE_PIP, install(".[test]")]
    # The test extras include the project itself: run.sh after test.sh installs nothing.
    assert calls(checkout, "venv.sh", "python3", ".") == []
    assert calls(checkout, "venv.sh", "python3", ".[test]") == []
    assert (checkout / STAMP).read_text().splitlines()[1:] == ["extra test"]


def test_extras_are_forgotten_when_pyproject_changes(checkout: Path) -> None:
    calls(checkout, "venv.sh", "python3", ".[test]")
    with (checkout / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# a new test dependency\n")
    assert calls(checkout, "venv.sh", "python3", ".") == [UPGRADE_PIP, install(".")]
    assert calls(checkout, "venv.sh", "python3", ".[test]") == [UPGRADE_PIP, install(".[test]")]


def test_a_failed_install_is_tried_again(checkout: Path) -> None:
    calls(checkout, "venv.sh", "python3", ".")
    calls(checkout, "venv.sh", "python3", ".[test]", fail_install=True)
    assert not (checkout / STAMP).exists()
    assert calls(checkout, "venv.sh", "python3", ".") == [UPGRADE_PIP, install(".")]


def test_an_unknown_spec_is_refused(checkout: Path) -> None:
    done = subprocess.run(
        [str(checkout / "scripts" / "venv.sh"), "python3", "requests"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "SPEC is . or .[extra,...]" in done.stderr
    assert not (checkout / "calls.log").exists()
