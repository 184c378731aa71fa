"""The container image: build the real Dockerfile with buildah, run it against real Postfix.

No Docker engine runs here and the official Python image cannot be pulled, so the base is a
stand-in made with debootstrap: Debian bookworm with its own python3 and python3-venv, the
same Python the slim images are built from, but at /usr/bin instead of /usr/local/bin.  It
is kept in buildah's storage under a fixed name, so only the first run pays for it.

The image's entrypoint then runs as the image's user (buildah's chroot isolation, host
network), probes Postfix listeners over loopback and is scraped like any exporter.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.postfix import PostfixServers
from tests.support.tools import unavailable

pytestmark = pytest.mark.slow

REPO_ROOT: Final = Path(__file__).resolve().parent.parent

# A storage of its own: vfs needs no kernel overlay support, and it cannot clash with the
# driver of any other containers storage on the machine.
STORAGE_ROOT: Final = Path("/var/lib/smtp-tls-exporter-test/containers")
RUN_ROOT: Final = Path("/run/smtp-tls-exporter-test/containers")
BUILDAH: Final = (
    "buildah",
    "--root",
    str(STORAGE_ROOT),
    "--runroot",
    str(RUN_ROOT),
    "--storage-driver",
    "vfs",
)
BASE_LOCK: Final = Path("/run/smtp-tls-exporter-test/base.lock")

BASE_IMAGE: Final = "localhost/smtp-tls-exporter-test-base:bookworm"
DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"
BASE_PACKAGES: Final = "python3,python3-venv,ca-certificates"

# RUN steps reach PyPI only through the host's trust store.
HOST_CA_BUNDLE: Final = "/etc/ssl/certs/ca-certificates.crt"

CONFIG_DIR: Final = "/etc/smtp-tls-exporter"
CONFIG_FILE: Final = f"{CONFIG_DIR}/config.yaml"
CA_FILE: Final = f"{CONFIG_DIR}/test-ca.pem"
DEFAULT_PORT: Final = 9025

DEBOOTSTRAP_TIMEOUT: Final = 900.0
BUILD_TIMEOUT: Final = 1200.0
COMMAND_TIMEOUT: Final = 120.0
READY_TIMEOUT: Final = 60.0
PROBE_TIMEOUT: Final = 90.0
STOP_TIMEOUT: Final = 20.0


def _unavailable() -> str | None:
    """None when the image can be built and run here, else the reason why not."""
    if os.geteuid() != 0:
        return "building the image needs root (buildah with vfs storage and chroot isolation)"
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool, path=search) is None:
            return f"{tool} is not installed; run scripts/install-test-deps.sh"
    if not Path(HOST_CA_BUNDLE).is_file():
        return f"no host trust store at {HOST_CA_BUNDLE} for the build's PyPI downloads"
    return None


def _run(
    args: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}",
            pytrace=False,
        )
    return result


def _buildah(*args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True) -> str:
    return _run([*BUILDAH, *args], timeout=timeout, check=check).stdout.strip()


def _image_exists(name: str) -> bool:
    return _run([*BUILDAH, "inspect", "--type", "image", name], check=False).returncode == 0


def _make_base_image(workdir: Path) -> None:
    """debootstrap a minimal bookworm with python3 and import it as ``BASE_IMAGE``."""
    rootfs = workdir / "rootfs"
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            timeout=DEBOOTSTRAP_TIMEOUT,
        )
        # What Debian's own container images leave out too.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "dev"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        container = _buildah("from", "scratch")
        try:
            mountpoint = _buildah("mount", container)
            _run(["cp", "-a", f"{rootfs}/.", mountpoint], timeout=300.0)
            _buildah("umount", container)
            _buildah(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--cmd",
                "python3",
                container,
            )
            _buildah("commit", "--format", "docker", container, BASE_IMAGE, timeout=300.0)
        finally:
            _buildah("rm", container, check=False)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


@contextlib.contextmanager
def _base_lock() -> Iterator[None]:
    """Serialise base creation between concurrent test runs on one machine."""
    BASE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with BASE_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Image:
    name: str
    config: dict[str, Any]
    """The Docker image config (User, Entrypoint, Cmd, ExposedPorts, Healthcheck, ...)."""
    build_log: str
    """What the build printed, every step's output included."""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The Dockerfile built on the stand-in base; removed again afterwards."""
    reason = _unavailable()
    if reason is not None:
        unavailable(reason)
    with _base_lock():
        if not _image_exists(BASE_IMAGE):
            _make_base_image(tmp_path_factory.mktemp("base"))
    name = f"localhost/smtp-tls-exporter-test:{os.getpid()}"
    log = tmp_path_factory.mktemp("build") / "build.log"
    with log.open("w") as out:
        build = subprocess.run(
            [
                *BUILDAH,
                "bud",
                "--isolation",
                "chroot",
                "--format",
                "docker",
                "--pull-never",
                "--build-arg",
                f"PYTHON_IMAGE={BASE_IMAGE}",
                "--volume",
                f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
                "--tag",
                name,
                str(REPO_ROOT),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    if build.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        pytest.fail(f"buildah bud failed ({build.returncode}):\n{tail}", pytrace=False)
    try:
        inspected = json.loads(_buildah("inspect", "--type", "image", name))
        yield Image(name, inspected["Docker"]["config"], log.read_text(errors="replace"))
    finally:
        _buildah("rmi", name, check=False)


@pytest.fixture
def container(image: Image) -> Iterator[str]:
    """A working container of the image; removed afterwards."""
    name = f"smtp-tls-exporter-test-{os.getpid()}-{time.monotonic_ns()}"
    _buildah("from", "--pull-never", "--name", name, image.name)
    try:
        yield name
    finally:
        _buildah("rm", name, check=False)


def _run_argv(image: Image, container: str, *command: str) -> list[str]:
    """`buildah run` of a command in the container as the image's user, on the host network."""
    return [*BUILDAH, "run", "--isolation", "chroot", "--user", image.config["User"],
            container, "--", *command]  # fmt: skip


def _in_container(
    image: Image, container: str, *command: str, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a command in the container and wait for it."""
    return _run(_run_argv(image, container, *command), timeout=timeout, check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _samples(text: str, name: str) -> dict[str, float]:
    """``target`` label -> value of every sample called ``name`` with those labels."""
    return {
        sample.labels.get("target", ""): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _version_supported(text: str, target: str, version: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "smtp_tls_version_supported"
                and sample.labels.get("target") == target
                and sample.labels.get("version") == version
            ):
                return sample.value
    return None


# --- the image config ---------------------------------------------------------------


def test_runs_as_the_unprivileged_user_of_the_helm_chart(image: Image) -> None:
    values = yaml.safe_load((REPO_ROOT / "helm" / "values.yaml").read_text())
    uid = values["securityContext"]["runAsUser"]
    gid = values["securityContext"]["runAsGroup"]
    # Numeric, so that Kubernetes' runAsNonRoot can check it without /etc/passwd.
    assert image.config["User"] == f"{uid}:{gid}"
    assert uid != 0


def test_entrypoint_is_the_exporter_in_exec_form(image: Image) -> None:
    assert image.config["Entrypoint"] == ["smtp-tls-exporter"]
    assert image.config["Cmd"] == [f"--config.file={CONFIG_FILE}"]


def test_exposes_the_default_port_and_has_a_healthcheck(image: Image) -> None:
    assert f"{DEFAULT_PORT}/tcp" in image.config["ExposedPorts"]
    test = image.config["Healthcheck"]["Test"]
    assert test[0] == "CMD", "exec form: no shell needed in the image"
    assert f"127.0.0.1:{DEFAULT_PORT}/-/healthy" in " ".join(test)


def test_labels_carry_the_project_version(image: Image) -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    labels = image.config["Labels"]
    assert labels["org.opencontainers.image.title"] == "smtp-tls-exporter"
    assert labels["org.opencontainers.image.version"] == pyproject["project"]["version"]
    license = pyproject["project"]["license"]
    spdx = license if isinstance(license, str) else license["text"]
    assert labels["org.opencontainers.image.licenses"] == spdx


def test_the_build_checks_the_example_config(image: Image) -> None:
    assert "/src/config.example.yaml: OK, " in image.build_log, image.build_log[-2000:]


def test_without_a_config_the_entrypoint_says_where_to_mount_one(
    image: Image, container: str
) -> None:
    """No example config is built in to be probed by mistake: `docker run IMAGE` alone stops."""
    started = _in_container(image, container, *image.config["Entrypoint"], *image.config["Cmd"])
    assert started.returncode == 1, started.stdout + started.stderr
    # One line from the exporter; buildah adds its own after it.
    assert started.stderr.splitlines()[0] == (
        f"{CONFIG_FILE}: file not found: give the config file with --config.file=FILE"
        f" (in a container, mount it at {CONFIG_FILE})"
    ), started.stderr


def test_no_config_and_no_build_tools_are_left(image: Image, container: str) -> None:
    paths = ("/src", "/wheels", "/opt/build", CONFIG_FILE)
    leftovers = _in_container(
        image,
        container,
        "python3",
        "-c",
        "import importlib.util, os; "
        "print([m for m in ('pip', 'setuptools') if importlib.util.find_spec(m)]"
        f" + [p for p in {paths!r} if os.path.exists(p)])",
    )
    assert leftovers.returncode == 0, leftovers.stderr
    assert leftovers.stdout.strip() == "[]"


def test_the_installed_code_is_compiled(image: Image, container: str) -> None:
    """Bytecode is written at build time: the root filesystem is read-only in the chart."""
    compiled = _in_container(
        image,
        container,
        "python3",
        "-c",
        "import exporter.cli, importlib.util; "
        "print(importlib.util.find_spec('exporter.cli').cached)",
    )
    assert compiled.returncode == 0, compiled.stderr
    cached = compiled.stdout.strip()
    assert cached.startswith("/opt/venv/"), cached
    assert _in_container(image, container, "test", "-f", cached).returncode == 0, cached


# --- the exporter in the image, against Postfix ---------------------------------------


def _write_config(postfix: PostfixServers, directory: Path) -> tuple[Path, Path]:
    targets = []
    for name in ("all", "no_starttls"):
        host, port = postfix.address(name)
        targets.append({"host": host, "port": port, "name": name, "servername": "localhost"})
    config = {
        "defaults": {
            "interval": "1h",
            "timeout": "30s",
            "ehlo_name": "client.test",
            "ca_file": CA_FILE,
        },
        "targets": targets,
    }
    config_file = directory / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    ca_file = directory / "test-ca.pem"
    ca_file.write_bytes(postfix.ca_file.read_bytes())
    for path in (config_file, ca_file):
        path.chmod(0o644)
    return config_file, ca_file


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(child) for child in (task / "children").read_text().split()]
    return children


def _leaf_process(pid: int) -> int:
    """The innermost descendant: under ``buildah run`` that is the containerised command."""
    while children := _children(pid):
        pid = children[0]
    return pid


def _stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM to the exporter itself, as a container runtime sends it; SIGKILL if need be.

    ``buildah run`` does not pass signals on (it kills the command instead), so the signal
    goes to the innermost process; buildah then exits with the command's status.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(_leaf_process(process.pid), signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout=STOP_TIMEOUT)


def _wait_for(
    what: str, condition: Any, timeout: float, process: subprocess.Popen[bytes], log: Path
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"the exporter exited ({process.returncode}) before {what}:\n{log.read_text()}",
                pytrace=False,
            )
        with contextlib.suppress(OSError):
            result = condition()
            if result:
                return result
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f}s:\n{log.read_text()}", pytrace=False)
        time.sleep(0.25)


def test_exporter_in_the_image_probes_postfix(
    image: Image, container: str, postfix: PostfixServers, tmp_path: Path
) -> None:
    config_file, ca_file = _write_config(postfix, tmp_path)
    _buildah("copy", "--chown", "0:0", container, str(config_file), CONFIG_FILE)
    _buildah("copy", "--chown", "0:0", container, str(ca_file), CA_FILE)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "exporter.log"
    command = _run_argv(
        image,
        container,
        *image.config["Entrypoint"],
        f"--config.file={CONFIG_FILE}",
        f"--web.listen-address=127.0.0.1:{port}",
    )
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for(
            "/-/ready", lambda: _get(f"{base}/-/ready")[0] == 200, READY_TIMEOUT, process, log
        )

        def probed() -> str | None:
            status, text = _get(f"{base}/metrics")
            done = _samples(text, "smtp_tls_probe_timestamp_seconds")
            return text if status == 200 and {"all", "no_starttls"} <= done.keys() else None

        metrics: str = _wait_for("finished probes", probed, PROBE_TIMEOUT, process, log)

        assert _version_supported(metrics, "all", "1.2") == 1, metrics
        assert _samples(metrics, "smtp_tls_starttls_advertised")["no_starttls"] == 0, metrics
        assert _samples(metrics, "smtp_tls_cert_verified")["all"] == 1, metrics

        healthcheck = image.config["Healthcheck"]["Test"][1:]
        here = [arg.replace(f":{DEFAULT_PORT}/", f":{port}/") for arg in healthcheck]
        healthy = _in_container(image, container, *here)
        assert healthy.returncode == 0, healthy.stdout + healthy.stderr
        nobody = [arg.replace(f":{DEFAULT_PORT}/", f":{_free_port()}/") for arg in healthcheck]
        assert _in_container(image, container, *nobody).returncode != 0
    finally:
        status = _stop(process)
    assert status == 0, f"the exporter did not stop cleanly on SIGTERM:\n{log.read_text()}"


# --- a read-only root, the results on a volume ----------------------------------------------

STORAGE_DIR: Final = "/var/lib/smtp-tls-exporter"


def _read_only_argv(rootfs: str, volume: Path, uid: str, *command: str) -> list[str]:
    """`command` in the image's files as a container runtime runs it with a read-only root
    (`docker run --read-only`, the chart's readOnlyRootFilesystem) and `volume` mounted at
    STORAGE_DIR: a mount namespace of its own, the root bind-mounted read-only, then chroot
    as the image's user. buildah run has no read-only root, so the test makes one."""
    script = (
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"'
        ' && mount --bind "$2" "$1$3" && root="$1" user="$4" && shift 4'
        ' && exec chroot --userspec="$user" "$root" "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            rootfs, str(volume), STORAGE_DIR, uid, *command]  # fmt: skip


def test_the_image_keeps_results_on_a_volume_with_a_read_only_root(
    image: Image, container: str, postfix: PostfixServers, tmp_path: Path
) -> None:
    config_file, ca_file = _write_config(postfix, tmp_path)
    _buildah("copy", "--chown", "0:0", container, str(config_file), CONFIG_FILE)
    _buildah("copy", "--chown", "0:0", container, str(ca_file), CA_FILE)
    rootfs = _buildah("mount", container).strip()
    volume = tmp_path / "volume"
    volume.mkdir()
    uid, gid = (int(part) for part in image.config["User"].split(":"))
    os.chown(volume, uid, gid)  # what a volume's owner is: fsGroup, or the image's directory
    env = {"PATH": "/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        argv = _read_only_argv(rootfs, volume, image.config["User"], *command)
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    # The harness holds: the root refuses writes, the volume takes them.
    tried = run("python3", "-c", "open('/probe-write', 'w')")
    assert "Read-only file system" in tried.stderr, tried.stderr
    assert run("python3", "-c", f"open('{STORAGE_DIR}/x', 'w')").returncode == 0
    (volume / "x").unlink()

    timestamps = []
    for attempt in ("first", "restarted"):
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / f"exporter-{attempt}.log"
        argv = _read_only_argv(
            rootfs, volume, image.config["User"], *image.config["Entrypoint"],
            f"--config.file={CONFIG_FILE}", f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.path={STORAGE_DIR}",
        )  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:

            def stored(base: str = base) -> str | None:
                status, text = _get(f"{base}/metrics")
                writes = _samples(text, "smtp_tls_exporter_storage_writes_total").get("", 0)
                done = _samples(text, "smtp_tls_probe_timestamp_seconds")
                restored = _samples(text, "smtp_tls_exporter_storage_restored_targets")
                ready = writes >= 2 or restored.get("") == 2
                return text if status == 200 and ready and len(done) == 2 else None

            metrics: str = _wait_for("stored results", stored, PROBE_TIMEOUT, process, log)
            timestamps.append(_samples(metrics, "smtp_tls_probe_timestamp_seconds"))
        finally:
            status = _stop(process)
        assert status == 0, f"the exporter did not stop cleanly:\n{log.read_text()}"
    first, restarted = timestamps
    assert restarted == first  # served from the volume, not probed again
    database = volume / "results.sqlite3"
    assert database.stat().st_uid == uid
