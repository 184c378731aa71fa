"""The exporter's command line when it cannot start: one line that says what to do, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main


@pytest.mark.parametrize("check", [False, True])
def test_a_missing_config_file_says_where_and_how(
    check: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    argv = [f"--config.file={path}", "--web.listen-address=127.0.0.1:0"]
    assert main([*argv, "--config.check"] if check else argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"{path}: file not found: give the config file with --config.file=FILE"
        f" (in a container, mount it at {path})\n"
    )


def test_the_default_file_is_named_as_a_full_path_for_mounting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--config.check"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("config.yaml: file not found: ")
    assert f"mount it at {tmp_path / 'config.yaml'})" in err


def test_an_unreadable_config_keeps_its_own_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"--config.file={tmp_path}", "--config.check"]) == 1
    assert capsys.readouterr().err == f"{tmp_path}: is a directory, not a file\n"


def test_a_loop_of_symbolic_links_is_not_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.symlink_to(second)
    second.symlink_to(first)
    assert main([f"--config.file={first}", "--config.check"]) == 1
    assert capsys.readouterr().err == (
        f"{first}: cannot read the file: Too many levels of symbolic links\n"
    )
