"""Config files that are hostile, or just wrong in ways a file can be: alias and merge bombs,
a 100 MB file, an endless device, bytes that are no UTF-8, a directory, a file the exporter
may not read, a loop of symbolic links. Each ends in one line that names the file, within
bounded time and memory (measured in a child process with its address space capped), and a
reload meeting one keeps the running config probing."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.config import Config, ConfigError, load_config, parse_config
from exporter.config.yamlfile import MAX_FILE_BYTES, MAX_NODES
from tests.support.exporter_process import (
    HOST,
    ExporterProcess,
    exporter_command,
    free_port,
    running_exporter,
    write_config,
)

#: The address space a check may have: the exporter's imports take about a third of it.
ADDRESS_SPACE = 1024 * 1024 * 1024
#: What a refused file may cost at most, above what loading the exporter costs.
PEAK_MB = 200
QUICK = 10.0
#: Root without the capabilities that let it read and enter what file modes forbid: the
#: modes then count, while the checkout (whatever its directory's mode) stays readable.
MODES_COUNT = ["--bounding-set=-dac_override,-dac_read_search",
               "--inh-caps=-dac_override,-dac_read_search"]  # fmt: skip


def _nested_lists(levels: int) -> str:
    """The billion laughs: each level a list of nine aliases to the level below."""
    lines = ["  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return (
        "x-laughs:\n"
        + "\n".join(lines)
        + f"\ntargets:\n  - {{host: a.example, labels: *l{levels - 1}}}\n"
    )


def _nested_merges(levels: int) -> str:
    """Merge keys instead of lists: each level merges the one below nine times."""
    lines = ["  m0: &m0 {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7}"]
    lines += [f"  m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, levels)]
    return "x-merges:\n" + "\n".join(lines) + "\ntargets:\n  - host: a.example\n"


def _fresh_keys_per_level(levels: int) -> str:
    """Each level merges the one below twice and adds keys of its own, so no two merged
    keys are the same object (what PyYAML before 6.0.4 expanded exponentially)."""
    lines = ["  b0: &b0 {k0_0: v}"]
    for level in range(1, levels):
        own = ", ".join(f"k{level}_{i}: v" for i in range(1 << min(level, 6)))
        lines.append(f"  b{level}: &b{level} {{<<: [*b{level - 1}, *b{level - 1}], {own}}}")
    return "x-fresh:\n" + "\n".join(lines) + "\ntargets:\n  - host: a.example\n"


def _merged_into_many(keys: int, mappings: int) -> str:
    """One large mapping merged into many others: no nesting, quadratic all the same."""
    base = "x-base: &base {" + ", ".join(f"k{i}: {i}" for i in range(keys)) + "}\n"
    many = "x-many:\n" + "".join("  - {<<: *base}\n" for _ in range(mappings))
    return base + many + "targets:\n  - host: a.example\n"


def _shared_labels(labels: int, targets: int) -> str:
    """One alias to many labels, on every target: what the reader walks, it walks for each."""
    head = "x-labels: &labels {" + ", ".join(f"l{i}: v" for i in range(labels)) + "}\n"
    rows = "".join(f"  - {{host: mx{i}.example, labels: *labels}}\n" for i in range(targets))
    return head + "targets:\n" + rows


BOMBS: dict[str, tuple[str, str]] = {
    "billion-laughs": (_nested_lists(10), "expand it to over"),
    "nested-merges": (_nested_merges(10), "expand it to over"),
    "merges-with-fresh-keys": (_fresh_keys_per_level(24), "expand it to over"),
    "one-mapping-merged-into-many": (_merged_into_many(2000, 2000), "expand it to over"),
    "shared-labels-on-every-target": (_shared_labels(3000, 3000), "expand it to over"),
    "contains-itself": ("targets: &t\n  - host: a.example\n  - *t\n", "refers to the value itself"),
}


# --- a check in a child process with a capped address space ---------------------------------


@dataclass(frozen=True)
class Checked:
    """How `--config.check` ended, and what it cost."""

    status: int
    stderr: str
    seconds: float
    peak_mb: float


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def check_config(path: Path, *, modes_count: bool = False) -> Checked:
    """`smtp-tls-exporter --config.check` on `path` with its address space capped; its
    peak RSS from the kernel's accounting of that child (wait4). `modes_count`: as root
    without the capabilities that override file modes."""
    argv = [*exporter_command(), f"--config.file={path}", "--config.check"]
    if modes_count:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv is not installed")
        argv = [setpriv, *MODES_COUNT, *argv]
    with tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_cap_address_space
        )
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > 60:
                proc.kill()
                pytest.fail(f"--config.check on {path} still running after 60 s")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return Checked(
            status=proc.returncode,
            stderr=err.read().decode(errors="replace"),
            seconds=time.monotonic() - started,
            peak_mb=usage.ru_maxrss / 1024,
        )


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Checked:
    """A good file: what the check costs anyway."""
    path = tmp_path_factory.mktemp("good") / "config.yaml"
    path.write_text("targets:\n  - host: mx.example.org\n")
    checked = check_config(path)
    assert checked.status == 0, checked.stderr
    return checked


def assert_refused(checked: Checked, path: Path, words: str, baseline: Checked) -> None:
    """Refused with one line naming the file and saying `words`, quickly, in little memory."""
    assert checked.status == 1, checked
    lines = checked.stderr.splitlines()
    assert len(lines) == 1, checked.stderr
    assert lines[0].startswith(f"{path}: "), lines[0]
    assert words in lines[0], lines[0]
    assert "Traceback" not in checked.stderr
    assert checked.seconds < baseline.seconds + QUICK, checked
    assert checked.peak_mb < baseline.peak_mb + PEAK_MB, checked


@pytest.mark.parametrize("kind", list(BOMBS))
def test_alias_and_merge_bombs_are_refused_in_bounded_time_and_memory(
    kind: str, tmp_path: Path, baseline: Checked
) -> None:
    text, words = BOMBS[kind]
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert_refused(check_config(path), path, words, baseline)


def test_a_100_mb_file_is_refused_before_it_is_read(tmp_path: Path, baseline: Checked) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.write(b"targets:\n" + b"  - host: mx.example.org\n" * 1000)
        handle.truncate(100 * 1024 * 1024)  # the rest reads as zeros, written or not
    checked = check_config(path)
    assert_refused(checked, path, "104,857,600 bytes, more than the 10 MiB", baseline)


def test_an_endless_device_is_read_only_up_to_the_limit(baseline: Checked) -> None:
    path = Path("/dev/zero")
    checked = check_config(path)
    assert_refused(checked, path, "holds more than the 10 MiB", baseline)


def test_a_file_at_the_limit_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "padded.yaml"
    body = b"targets:\n  - host: mx.example.org\n"
    path.write_bytes(body + b"#" * (MAX_FILE_BYTES - len(body) - 1) + b"\n")
    assert load_config(path, default_ehlo_name="probe.example.org").targets


def test_bytes_that_are_no_utf8_are_named(tmp_path: Path, baseline: Checked) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("targets:\n  - host: mx.bücher.example\n".encode("latin-1"))
    assert_refused(
        check_config(path), path, "not UTF-8 text: byte 0xfc at line 2, column 15", baseline
    )


def test_a_directory_is_named(tmp_path: Path, baseline: Checked) -> None:
    path = tmp_path / "config.d"
    path.mkdir()
    assert_refused(check_config(path), path, "is a directory, not a file", baseline)


def test_a_loop_of_symbolic_links_is_named(tmp_path: Path, baseline: Checked) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.symlink_to(second)
    second.symlink_to(first)
    assert_refused(check_config(first), first, "Too many levels of symbolic links", baseline)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own are the owner's only)."""
    path = Path(tempfile.mkdtemp(prefix="smtp-tls-hostile-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_an_unreadable_file_is_named(shared_dir: Path, baseline: Checked) -> None:
    path = shared_dir / "secret.yaml"
    path.write_text("targets:\n  - host: mx.example.org\n")
    path.chmod(0o000)
    # root reads anything: check without the capabilities that let it
    checked = check_config(path, modes_count=os.geteuid() == 0)
    assert_refused(checked, path, "cannot read the file: Permission denied", baseline)


def test_the_limits_leave_room_for_real_files() -> None:
    """Ten thousand targets sharing their settings through a merge key load."""
    common = "x-common: &common {interval: 10m, timeout: 20s, labels: {team: mail}}\n"
    rows = "".join(f"  - {{<<: *common, host: mx{i}.example.org}}\n" for i in range(10_000))
    started = time.monotonic()
    config = load_config_text(common + "targets:\n" + rows)
    assert len(config.targets) == 10_000
    assert time.monotonic() - started < QUICK
    assert MAX_NODES > 10_000 * 12


def load_config_text(text: str) -> Config:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(text)
        handle.flush()
        return load_config(handle.name, default_ehlo_name="probe.example.org")


def test_errors_name_the_file_in_one_line_in_the_library_too(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMBS["billion-laughs"][0])
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).count("\n") == 0
    assert str(error.value).startswith(f"{path}: invalid YAML")


# --- reloads keep the running config ------------------------------------------------------


def _bomb(path: Path) -> None:
    path.write_text(BOMBS["nested-merges"][0])


def _huge(path: Path) -> None:
    os.truncate(path, 100 * 1024 * 1024)


def _latin1(path: Path) -> None:
    path.write_bytes(b"targets: [{host: m\xfc.example}]\n")


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path.with_name("loop.yaml"))
    path.with_name("loop.yaml").symlink_to(path)


BAD_RELOADS: dict[str, tuple[Callable[[Path], None], str]] = {
    "bomb": (_bomb, "expand it to over"),
    "huge": (_huge, "more than the 10 MiB"),
    "latin1": (_latin1, "not UTF-8"),
    "directory": (_directory, "is a directory"),
    "loop": (_loop, "Too many levels of symbolic links"),
}


def _restore(path: Path, config: dict[str, object]) -> None:
    for spoilt in (path, path.with_name("loop.yaml")):
        if spoilt.is_symlink() or spoilt.is_file():
            spoilt.unlink()
        elif spoilt.is_dir():
            spoilt.rmdir()
    write_config(path, config)


def _config(port: int) -> dict[str, object]:
    """One target nobody listens on, probed every second: each probe fails at once."""
    return {
        "defaults": {"interval": "1s", "timeout": "1s", "ehlo_name": "client.test"},
        "targets": [{"host": HOST, "port": port, "name": "old"}],
    }


def _last_probe(process: ExporterProcess) -> float:
    value = process.scrape().value("smtp_tls_probe_timestamp_seconds", target="old")
    return 0.0 if value is None else value


def assert_still_probing(process: ExporterProcess, what: str) -> None:
    """The old config runs on: a reload failed, and its target is probed again."""
    scrape = process.scrape()
    assert scrape.value("smtp_tls_exporter_config_last_reload_successful") == 0, what
    assert scrape.targets() == {"old"}, what
    before = _last_probe(process)
    process.wait_until(
        lambda: _last_probe(process) > before, timeout=10, what=f"a probe after the {what} reload"
    )


def test_bad_reloads_keep_the_old_config_probing(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    good = _config(free_port())
    write_config(path, good)
    with running_exporter(path) as process:
        process.wait_for_targets(["old"], timeout=20)
        for kind, (spoil, words) in BAD_RELOADS.items():
            spoil(path)
            response = process.reload()
            assert response.status == 500, (kind, response.text)
            assert f"{path}: " in response.text, (kind, response.text)
            assert words in response.text, (kind, response.text)
            assert_still_probing(process, kind)
            _restore(path, good)
        assert process.reload().status == 200
        assert process.scrape().value("smtp_tls_exporter_config_last_reload_successful") == 1
        assert process.running
        assert "Traceback" not in process.log()


class ModesCountExporter(ExporterProcess):
    """The exporter run as root without the capabilities that override file modes."""

    @property
    def argv(self) -> list[str]:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None
        return [setpriv, *MODES_COUNT, *super().argv]


def test_a_file_the_exporter_may_no_longer_read_keeps_the_old_config(shared_dir: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the exporter without its capabilities")
    path = shared_dir / "config.yaml"
    write_config(path, _config(free_port()))
    path.chmod(0o644)
    process = ModesCountExporter(path, log_file=shared_dir / "exporter.log")
    with process:
        process.wait_for_targets(["old"], timeout=20)
        path.chmod(0o000)
        response = process.reload()
        assert response.status == 500, response.text
        assert f"{path}: cannot read the file: Permission denied" in response.text
        assert_still_probing(process, "unreadable")


def test_problems_are_text_even_when_the_file_writes_lone_surrogates(tmp_path: Path) -> None:
    """YAML escapes can make a key that no encoding takes; the problem naming it must still
    be sent as the reload's answer and shown on the status page."""
    path = tmp_path / "config.yaml"
    path.write_text('targets:\n  - host: a.example\n    "\\ud800": 1\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, default_ehlo_name="probe.example.org")
    assert str(error.value).encode("utf-8")
    assert "targets[0].\\ud800: unknown key" in str(error.value)


def test_a_reload_that_names_a_lone_surrogate_keeps_the_status_page(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    write_config(path, _config(free_port()))
    with running_exporter(path) as process:
        process.wait_for_targets(["old"], timeout=20)
        path.write_text('targets:\n  - host: a.example\n    "\\ud800": 1\n')
        response = process.reload()
        assert response.status == 500
        assert "targets[0].\\ud800: unknown key" in response.text
        page = process.get("/")
        assert page.status == 200
        assert "FAILED" in page.text
        assert_still_probing(process, "surrogate")
        assert "Traceback" not in process.log()


@pytest.mark.parametrize("key", ["a\\nb", "a\\rb", "a\\u2028b", "a\\x85b", "a\\x0bb", "a\\x1bb"])
def test_a_key_with_a_line_break_still_makes_a_one_line_problem(key: str) -> None:
    """YAML escapes can put line breaks (and terminal escapes) into a key; each problem
    stays one line, whatever splits lines."""
    with pytest.raises(ConfigError) as error:
        parse_config(
            f'targets:\n  - host: a.example\n    "{key}": 1\n', "c.yaml", default_ehlo_name="x.test"
        )
    (problem,) = error.value.problems
    assert problem.splitlines() == [problem]
    assert problem.isprintable()
    assert str(error.value).splitlines() == [str(error.value)]
