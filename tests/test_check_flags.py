"""`check` refuses bad flags with a usage error (exit 2) and reports its own bugs in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import exporter.probe
from exporter.cli import main
from exporter.target import Target, TLSVersion
from tests.support.exporter_process import free_port

# Nothing listens on port 1: were a flag let through, the probe would fail (exit 1), not 2.
ADDRESS = "127.0.0.1:1"


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(["check", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("usage: smtp-tls-exporter check")
    (message,) = [line for line in err.splitlines() if "error:" in line]
    return message


@pytest.mark.parametrize(
    ("ehlo_name", "expected"),
    [
        ("a.test\r\nRSET", r"'a.test\r\nRSET' contains white space"),
        ("a.test\nRSET", "contains white space"),
        ("héllo.test", "is not ASCII; write it as 'xn--hllo-bpa.test'"),
        ("bad_name.test", "'_'"),
        ("192.0.2.1", "EHLO needs it in brackets: '[192.0.2.1]'"),
        ("[nonsense]", "is not an address literal"),
        ("mx.test.", "must not end with a dot"),
        ("", "must not be empty"),
    ],
)
def test_bad_ehlo_name(capsys: pytest.CaptureFixture[str], ehlo_name: str, expected: str) -> None:
    message = usage_error(capsys, ADDRESS, "--ehlo-name", ehlo_name)
    assert "argument --ehlo-name:" in message
    assert expected in message


@pytest.mark.parametrize(
    ("servername", "expected"),
    [
        ("a b.test", "contains white space"),
        ("mx.test\r\n", "contains white space"),
        ("☃.test", "IDNA 2008"),
        ("https://mx.test", "is a URL"),
        ("mx.test:25", "looks like host:port"),
        ("a..test", "has an empty part"),
        ("1.2.3.999", "is not a valid IPv4 address"),
        ("", "must not be empty"),
    ],
)
def test_bad_servername(capsys: pytest.CaptureFixture[str], servername: str, expected: str) -> None:
    message = usage_error(capsys, ADDRESS, "--servername", servername)
    assert "argument --servername:" in message
    assert expected in message


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("bad host:25", "HOST 'bad host' contains white space"),
        ("☃.test", "HOST '☃.test' contains '☃' (U+2603), which IDNA 2008 does not allow"),
        ("mx.test\r\nRSET", "contains white space"),
        ("1.2.3.999:25", "is not a valid IPv4 address"),
        ("a..test", "has an empty part"),
        ("[192.0.2.1]:25", "brackets are only for IPv6 addresses"),
        ("mx$.test", "'$'"),
    ],
)
def test_bad_host(capsys: pytest.CaptureFixture[str], address: str, expected: str) -> None:
    assert expected in usage_error(capsys, address)


@pytest.mark.parametrize(
    ("versions", "expected"),
    [("1.2,1.2", "1.2 is listed twice"), ("1.4", "unknown version '1.4'"), ("", "unknown")],
)
def test_bad_versions(capsys: pytest.CaptureFixture[str], versions: str, expected: str) -> None:
    message = usage_error(capsys, ADDRESS, f"--versions={versions}")
    assert "argument --versions:" in message
    assert expected in message


@pytest.mark.parametrize(
    "timeout", ["nan", "NaN", "inf", "-inf", "0", "-1", "1e400", "1e300", "30x", "2y", ""]
)
def test_bad_timeout(capsys: pytest.CaptureFixture[str], timeout: str) -> None:
    assert "argument --timeout:" in usage_error(capsys, ADDRESS, f"--timeout={timeout}")


def target_of(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> Target:
    """The target `check` builds from `argv`, caught where it reaches the probe."""
    seen: list[Target] = []

    async def stand_in(target: Target) -> object:
        seen.append(target)
        raise RuntimeError("stop here")

    monkeypatch.setattr(exporter.probe, "probe", stand_in)
    assert main(["check", *argv]) == 1
    (target,) = seen
    return target


@pytest.mark.parametrize(
    "argv",
    [
        ["--servername", "mx.test."],
        ["--servername", "192.0.2.1"],
        ["--servername", "2001:db8::1"],
        ["--ehlo-name", "[192.0.2.1]"],
        ["--ehlo-name", "[IPv6:2001:db8::1]"],
        ["--ehlo-name", "probe.example.org"],
        ["--timeout", "0.5"],
        ["--timeout", "1m30s"],
        ["--versions", "TLSv1.3,1.0"],
    ],
)
def test_good_flags_reach_the_probe(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    target = target_of(monkeypatch, [ADDRESS, *argv])
    if argv[0] == "--servername":
        assert target.servername == argv[1].rstrip(".")
    if argv[0] == "--ehlo-name":
        assert target.ehlo_name == argv[1]
    if argv[0] == "--timeout":
        assert target.timeout == {"0.5": 0.5, "1m30s": 90.0}[argv[1]]
    if argv[0] == "--versions":  # as the config file takes them, in protocol order
        assert target.versions == (TLSVersion.TLS1_0, TLSVersion.TLS1_3)
    capsys.readouterr()


def test_unicode_names_are_probed_as_a_labels(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in the config file: DNS, SNI and certificates carry the A-label form."""
    argv = ["MX.Bücher.example:587", "--servername", "mail.bücher.example"]
    target = target_of(monkeypatch, argv)
    assert (target.host, target.port) == ("mx.xn--bcher-kva.example", 587)
    assert target.servername == "mail.xn--bcher-kva.example"
    capsys.readouterr()


@pytest.mark.parametrize("address", ["[2001:db8::1]:25", "2001:db8::1", "mx.test.", "127.0.0.1"])
def test_good_hosts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    async def fake_probe(_target: Target) -> object:
        raise RuntimeError("stop here")

    monkeypatch.setattr(exporter.probe, "probe", fake_probe)
    assert main(["check", address]) == 1
    assert "internal error" in capsys.readouterr().err


def test_a_crash_in_the_probe_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_probe(_target: Target) -> object:
        raise KeyError("multi\nline")

    monkeypatch.setattr(exporter.probe, "probe", broken_probe)
    assert main(["check", ADDRESS, "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "smtp-tls-exporter check: internal error: KeyError: 'multi\\nline'\n"


def test_injection_in_a_subprocess_is_a_usage_error_without_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check", ADDRESS, "--ehlo-name", "a.test\r\nRSET"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        r"smtp-tls-exporter check: error: argument --ehlo-name: 'a.test\r\nRSET'"
        " contains white space"
    )


def test_a_reader_that_goes_away_is_no_error() -> None:
    """`check ... | head`: no traceback when nobody reads the answer any more."""
    argv = [sys.executable, "-m", "exporter", "check", f"127.0.0.1:{free_port()}", "--json"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()  # gone before the probe ends: the write meets a closed pipe
        errors = process.stderr.read()
        assert process.wait(timeout=60) == 1  # the probe's own verdict: connection refused
    assert errors == b""
