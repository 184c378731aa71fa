"""The Helm chart: lint, render with several values files, validate what it renders."""

from __future__ import annotations

import base64
import importlib.util
import json
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trustme
import yaml

from exporter.shard import Shard, parse_shard
from tests.support.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART = REPO_ROOT / "helm"
VALUES_DIR = Path(__file__).resolve().parent / "helm-values"
EXAMPLE = CHART / "values.example.yaml"
README = REPO_ROOT / "README.md"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboard.json"

RELEASE = "mail"
NAMESPACE = "monitoring"
FULLNAME = "mail-smtp-tls-exporter"
CONFIG_DIR = "/etc/smtp-tls-exporter"
# Oldest and newest Kubernetes versions the rendered manifests are checked against.
KUBERNETES_VERSIONS = ("1.25", kubernetes_validate.latest_version())
CORE_KINDS = {"ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment", "StatefulSet"}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

#: The image the values files name; no image is published, so each names the user's own.
REPOSITORY = "registry.example.org/mail/smtp-tls-exporter"
#: The example values leave the image to the command line, as the README's install does.
IMAGE_SET = ("--set", f"image.repository={REPOSITORY}")

# name -> values file
CASES: dict[str, Path] = {
    "example": EXAMPLE,
    "full": VALUES_DIR / "full.yaml",
    "ipv6": VALUES_DIR / "ipv6.yaml",
    "ca-configmap": VALUES_DIR / "ca-configmap.yaml",
    "sharding": VALUES_DIR / "sharding.yaml",
    "web-config": VALUES_DIR / "web-config.yaml",
    "storage": VALUES_DIR / "storage.yaml",
}
#: Flags a case needs besides its values file.
CASE_FLAGS: dict[str, tuple[str, ...]] = {"example": IMAGE_SET}
#: The shards of the sharding case (sharding.shards in its values file).
SHARDS = 3

Manifest = dict[str, Any]

HELM_HINT = "scripts/install-helm.sh installs it"


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("helm", HELM_HINT), *args], capture_output=True, text=True, check=False
    )


def template(values: Path | None = None, *extra: str) -> list[Manifest]:
    """The manifests `helm template` renders; fails the test if rendering fails."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    result = run_helm(*args, *extra)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render(name: str, *extra: str) -> list[Manifest]:
    """The manifests of a case, rendered with its values file and flags."""
    return template(CASES[name], *CASE_FLAGS.get(name, ()), *extra)


def load_values(values: Path | None) -> dict[str, Any]:
    """The user values of a case, merged over nothing (the chart's defaults are not included)."""
    if values is None:
        return {}
    loaded: dict[str, Any] = yaml.safe_load(values.read_text())
    return loaded


def only(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def deployment(manifests: list[Manifest]) -> Manifest:
    return only(manifests, "Deployment")


def workload(manifests: list[Manifest]) -> Manifest:
    """What runs the pods: the Deployment, or the StatefulSet when sharding is on."""
    found = [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [m["kind"] for m in found]
    return found[0]


def container(manifests: list[Manifest]) -> Manifest:
    containers = workload(manifests)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Manifest = containers[0]
    return result


def rendered_config(manifests: list[Manifest]) -> tuple[str, dict[str, Any]]:
    """The exporter's config file from the ConfigMap: its text and the parsed YAML."""
    text: str = only(manifests, "ConfigMap", FULLNAME)["data"]["config.yaml"]
    return text, yaml.safe_load(text)


@pytest.fixture(scope="module", params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, list[Manifest]]:
    name: str = request.param
    return name, render(name)


# --- chart files (no helm needed) ----------------------------------------------------------


def test_chart_alerts_copy_is_identical() -> None:
    assert (CHART / "files" / "alerts.yml").read_bytes() == ALERTS.read_bytes(), (
        "helm/files/alerts.yml differs from deploy/prometheus/alerts.yml: copy it over"
    )


def test_chart_dashboard_copy_is_identical() -> None:
    assert (CHART / "files" / "dashboard.json").read_bytes() == DASHBOARD.read_bytes(), (
        "helm/files/dashboard.json differs from deploy/grafana/dashboard.json: copy it over"
    )


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "smtp-tls-exporter"
    assert chart["appVersion"] == "0.1.0"


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "- ")):
            continue
        previous = next((p.strip() for p in reversed(lines[:number]) if p.strip()), "")
        if not previous.startswith("##"):
            uncommented.append(f"line {number + 1}: {stripped}")
    assert not uncommented, "keys without a ## comment above them:\n" + "\n".join(uncommented)


def test_values_schema_is_json() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


# --- lint and render -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_lint(name: str) -> None:
    args = ["lint", "--strict", str(CHART), "--values", str(CASES[name]), *CASE_FLAGS.get(name, ())]
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_manifests_validate_against_kubernetes_schemas(
    case: tuple[str, list[Manifest]],
) -> None:
    _name, manifests = case
    for manifest in manifests:
        if manifest["kind"] not in CORE_KINDS:
            assert manifest["kind"] in CRD_KINDS, manifest["kind"]
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{manifest['kind']} {where}: {exc.message} (Kubernetes {version})")


def test_manifests_are_namespaced_and_labelled(case: tuple[str, list[Manifest]]) -> None:
    _name, manifests = case
    for manifest in manifests:
        metadata = manifest["metadata"]
        assert metadata["namespace"] == NAMESPACE, manifest["kind"]
        assert metadata["labels"]["app.kubernetes.io/name"] == "smtp-tls-exporter"
        assert metadata["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_example_renders_core_kinds_only() -> None:
    kinds = sorted(m["kind"] for m in render("example"))
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def test_full_renders_optional_kinds() -> None:
    kinds = sorted(m["kind"] for m in template(CASES["full"]))
    assert kinds == [
        "ConfigMap",
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_deployment_runs_the_exporter(case: tuple[str, list[Manifest]]) -> None:
    name, manifests = case
    assert workload(manifests)["spec"]["replicas"] == (SHARDS if name == "sharding" else 1)
    c = container(manifests)
    assert c["command"] == ["smtp-tls-exporter"]
    assert c["args"][:2] == [
        f"--config.file={CONFIG_DIR}/config.yaml",
        "--web.listen-address=:9025",
    ]
    assert c["ports"] == [{"name": "http-metrics", "containerPort": 9025, "protocol": "TCP"}]
    if name == "full":
        assert c["image"] == "registry.example.org/mail/smtp-tls-exporter:0.1.0-test"
        assert "--log.level=debug" in c["args"]
        assert "--log.format=json" in c["args"]
    else:
        assert c["image"] == f"{REPOSITORY}:0.1.0"


def test_security_context(case: tuple[str, list[Manifest]]) -> None:
    _name, manifests = case
    pod = workload(manifests)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(manifests)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not sc.get("privileged", False)


def test_probes(case: tuple[str, list[Manifest]]) -> None:
    name, manifests = case
    c = container(manifests)
    web: dict[str, object] = {}
    if name == "web-config":  # over TLS, as the probes' own user (see the web config tests)
        web = {"scheme": "HTTPS", "httpHeaders": [PROBE_AUTHORIZATION]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http-metrics"} | web
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http-metrics"} | web


def test_service(case: tuple[str, list[Manifest]]) -> None:
    _name, manifests = case
    service = only(manifests, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9025, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    pod_labels = workload(manifests)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_pod_metadata_from_values() -> None:
    manifests = template(CASES["full"])
    pod = deployment(manifests)["spec"]["template"]
    assert pod["metadata"]["annotations"]["example.org/team"] == "mail"
    assert pod["metadata"]["labels"]["team"] == "mail"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["spec"]["affinity"]
    assert pod["spec"]["priorityClassName"] == "monitoring"
    assert container(manifests)["env"] == [{"name": "TZ", "value": "UTC"}]


def test_config_checksum_rolls_the_pod() -> None:
    def checksum(*extra: str) -> str:
        annotations = deployment(render("example", *extra))["spec"]["template"]["metadata"][
            "annotations"
        ]
        value: str = annotations["checksum/config"]
        return value

    base = checksum()
    assert len(base) == 64
    assert checksum() == base
    assert checksum("--set", "config.targets[0].host=mx.example.org") != base


# --- the config file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["example", "full", "ipv6", "ca-configmap", "sharding", "web-config"]
)
def test_config_reproduces_values(name: str) -> None:
    values = load_values(CASES[name])
    _text, config = rendered_config(render(name))
    assert config["targets"] == values["config"]["targets"]
    expected_defaults = dict(values["config"].get("defaults", {}))
    if "caFile" in values:
        expected_defaults["ca_file"] = posixpath.join(
            CONFIG_DIR, "ca", values["caFile"].get("key", "ca.crt")
        )
    assert config.get("defaults", {}) == expected_defaults


def test_config_keeps_ipv6_hosts_as_text() -> None:
    _text, config = rendered_config(template(CASES["ipv6"]))
    hosts = [t["host"] for t in config["targets"]]
    assert hosts == ["2001:db8::25", "::1", "2001:db8:0:1::1", "2001:10:20:30:40:50:0:1"]
    assert config["targets"][3]["labels"] == {"rack": "1:20"}


@pytest.mark.parametrize(
    "values", ["config: {}", "config: {targets: []}", "config: {targets: null}", "{}"]
)
def test_a_config_without_targets_is_refused(values: str, tmp_path: Path) -> None:
    """The exporter would never become ready: the install fails instead, saying why."""
    file = tmp_path / "values.yaml"
    file.write_text(values + "\n")
    for command in ("template", "install"):
        result = run_helm(
            command, RELEASE, str(CHART), "--dry-run=client", "--values", str(file), *IMAGE_SET
        )
        assert result.returncode != 0, result.stdout
        assert "config.targets is empty: list at least one SMTP server" in result.stderr


@pytest.mark.parametrize("flags", [(), ("--set", "image.repository=")])
def test_the_image_repository_is_required(flags: tuple[str, ...]) -> None:
    """No image is published: the install says to build and push one instead of failing to
    pull a made-up name."""
    result = run_helm("template", RELEASE, str(CHART), "--values", str(EXAMPLE), *flags)
    assert result.returncode != 0
    assert "image.repository is not set: build the image" in result.stderr
    assert "unless it is 0.1.0" in result.stderr


@pytest.mark.parametrize(
    ("name", "source", "key"),
    [("full", "secret", "ca-bundle.pem"), ("ca-configmap", "configMap", "ca.crt")],
)
def test_ca_file_is_mounted_where_the_config_points(name: str, source: str, key: str) -> None:
    manifests = template(CASES[name])
    _text, config = rendered_config(manifests)
    pod = deployment(manifests)["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in container(manifests)["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    sources = volume["projected"]["sources"]
    ca_source = sources[1][source]
    expected_name = {"secret": "mail-ca", "configMap": "internal-ca"}[source]
    assert ca_source["name"] == expected_name
    [item] = ca_source["items"]
    assert item["key"] == key
    mounted = posixpath.join(mounts["config"]["mountPath"], item["path"])
    assert config["defaults"]["ca_file"] == mounted
    assert mounts["config"]["readOnly"] is True


def test_no_ca_file_without_ca_values() -> None:
    manifests = template(CASES["ipv6"])
    _text, config = rendered_config(manifests)
    assert "defaults" not in config
    volume = next(
        v
        for v in deployment(manifests)["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "config"
    )
    assert len(volume["projected"]["sources"]) == 1


def test_ca_file_from_both_sources_is_refused() -> None:
    result = run_helm(
        "template", RELEASE, str(CHART), "--values", str(EXAMPLE), *IMAGE_SET,
        "--set", "caFile.secretName=a", "--set", "caFile.configMapName=b",
    )  # fmt: skip
    assert result.returncode != 0
    assert "not both" in result.stderr


@pytest.mark.parametrize(
    "setting",
    [
        "config.targets[0].port=70000",
        "config.targets[0].tls=ssl",
        "config.targets[0].connections=50",
        "config.targets[0].versions[0]=1.4",
        "config.targets[0].labels.target=x",
        "config.targets[0].hots=a",
        "config.defaults.interval=30s5m",
        "config.defaults.port=25",
        "log.level=verbose",
        "serviceMonitor.enable=true",
        "unknownKey=1",
        "sharding.shards=-1",
        "sharding.shards=two",
        "sharding.shard=3",
    ],
)
def test_schema_refuses_bad_values(setting: str) -> None:
    result = run_helm(
        "template", RELEASE, str(CHART),
        "--set", "config.targets[0].host=mx.example.org", "--set", setting,
    )  # fmt: skip
    assert result.returncode != 0, setting
    assert "schema" in result.stderr.lower(), result.stderr


def write_config_for_check(text: str, config: dict[str, Any], directory: Path) -> Path:
    """The rendered config, with the in-pod CA path replaced by a real CA file on this machine."""
    ca_file = config.get("defaults", {}).get("ca_file")
    if ca_file is not None:
        assert ca_file.startswith(f"{CONFIG_DIR}/ca/")
        local_ca = directory / "ca.pem"
        trustme.CA().cert_pem.write_to_path(str(local_ca))
        text = text.replace(json.dumps(ca_file), json.dumps(str(local_ca)))
        assert json.dumps(str(local_ca)) in text
    path = directory / "config.yaml"
    path.write_text(text)
    return path


def _check_with_loader(path: Path) -> tuple[bool, str] | None:
    """Check with `exporter.config.load_config`; None when the loader does not exist yet."""
    try:
        from exporter.config import ConfigError, load_config
    except ImportError:
        return None
    try:
        load_config(path, default_ehlo_name="probe.example.org")
    except ConfigError as exc:
        return False, str(exc)
    return True, ""


def _check_with_cli(path: Path) -> tuple[bool, str] | None:
    """Check with `python -m exporter --config.check`; None while the CLI cannot do it yet."""
    if importlib.util.find_spec("exporter.cli") is None:
        return None
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", f"--config.file={path}"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
        timeout=60,
    )
    output = result.stdout + result.stderr
    # A part of the package that is not written yet; any other traceback is a failure.
    if "ModuleNotFoundError: No module named 'exporter." in output:
        return None
    assert "Traceback" not in output, output
    assert result.returncode in (0, 1), output
    return result.returncode == 0, output


def check_config(path: Path) -> tuple[bool, str]:
    """(accepted, messages) from the exporter's own config check: its CLI, else its loader."""
    for checker in (_check_with_cli, _check_with_loader):
        verdict = checker(path)
        if verdict is not None:
            return verdict
    pytest.xfail("config loader not available")


@pytest.mark.xfail(
    condition=importlib.util.find_spec("exporter") is None,
    reason="config loader not available",
    strict=False,
)
@pytest.mark.parametrize("name", list(CASES))
def test_rendered_config_passes_the_exporters_check(name: str, tmp_path: Path) -> None:
    text, config = rendered_config(render(name))
    path = write_config_for_check(text, config, tmp_path)
    accepted, output = check_config(path)
    assert accepted, output


# --- the README's install ----------------------------------------------------------------


def readme_helm_commands() -> list[str]:
    """The lines of the first shell block of the README's Helm section."""
    section = README.read_text().split("\n## Helm\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


def test_readme_builds_the_tag_the_chart_runs() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    image = f"$REGISTRY/smtp-tls-exporter:{app_version}"
    commands = readme_helm_commands()
    assert f"docker build -t {image} ." in commands
    assert f"docker push {image}" in commands


def test_readme_helm_install_runs_as_written(tmp_path: Path) -> None:
    """The README's commands in a checkout, the image build aside and the install a dry run."""
    helm = require_tool("helm", HELM_HINT)
    (tmp_path / "helm").symlink_to(CHART)
    script = "\n".join(line for line in readme_helm_commands() if not line.startswith("docker "))
    assert "helm install " in script
    script = script.replace("helm install ", f"{helm} install --dry-run=client ")
    done = subprocess.run(
        ["bash", "-euc", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    rendered = done.stdout.split("\nMANIFEST:\n", 1)[1].split("\nNOTES:\n", 1)[0]
    manifests = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert container(manifests)["image"] == f"{REPOSITORY}:0.1.0"
    assert (tmp_path / "my-values.yaml").read_text() == EXAMPLE.read_text()


# --- optional resources --------------------------------------------------------------------


def test_service_monitor() -> None:
    manifests = template(CASES["full"])
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    service = only(manifests, "Service")
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] == "http-metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "2m"
    assert endpoint["scrapeTimeout"] == "20s"
    assert endpoint["metricRelabelings"][0]["action"] == "keep"
    assert endpoint["scheme"] == "http"
    assert set(endpoint) <= {
        "port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "metricRelabelings",
        "tlsConfig", "basicAuth",
    }  # fmt: skip


def test_prometheus_rule_carries_the_alerts_verbatim(tmp_path: Path) -> None:
    rule = only(template(CASES["full"]), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    annotations = rule["spec"]["groups"][0]["rules"][0]["annotations"]
    assert "{{ $labels.target }}" in annotations["summary"]
    if shutil.which("promtool") is not None:
        rules_file = tmp_path / "rendered-rules.yml"
        rules_file.write_text(yaml.safe_dump(rule["spec"]))
        result = subprocess.run(
            ["promtool", "check", "rules", str(rules_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_dashboard_configmap() -> None:
    configmap = only(template(CASES["full"]), "ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Mail"}
    [(key, text)] = configmap["data"].items()
    assert key.endswith(".json")
    assert json.loads(text) == json.loads(DASHBOARD.read_text())


def test_notes_count_the_targets() -> None:
    result = run_helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
        "--values", str(CASES["full"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "4 SMTP target(s)" in notes
    assert "PrometheusRule" in notes


# --- sharding: a StatefulSet whose pod I probes shard I ------------------------------------

POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def expand(arg: str, env: dict[str, str]) -> str:
    """An argument as the kubelet passes it: `$(NAME)` replaced by the container's env var."""
    return re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg)


def test_sharding_renders_a_statefulset_and_a_headless_service() -> None:
    manifests = template(CASES["sharding"])
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == ["ConfigMap", "Service", "ServiceAccount", "ServiceMonitor", "StatefulSet"]
    statefulset = only(manifests, "StatefulSet")
    service = only(manifests, "Service")
    assert statefulset["metadata"]["name"] == FULLNAME
    assert statefulset["spec"]["replicas"] == SHARDS
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert service["spec"]["clusterIP"] == "None"
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_sharding_replaces_replica_count() -> None:
    manifests = template(CASES["sharding"], "--set", "replicaCount=5")
    assert only(manifests, "StatefulSet")["spec"]["replicas"] == SHARDS


def test_each_pod_takes_its_shard_from_its_ordinal() -> None:
    c = container(template(CASES["sharding"]))
    [shard_arg] = [a for a in c["args"] if a.startswith("--shard")]
    assert shard_arg == f"--shard=$(POD_INDEX)/{SHARDS}"
    assert c["args"][-1] == "--probe.concurrency=20"  # extraArgs still come last
    env = {e["name"]: e for e in c["env"]}
    assert list(env) == ["POD_INDEX", "TZ"]
    assert env["POD_INDEX"]["valueFrom"] == {
        "fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}
    }
    # Every $(VAR) in the args names a variable the container defines (else Kubernetes would
    # pass it on literally), and each ordinal becomes a shard the exporter takes.
    for arg in c["args"]:
        assert set(re.findall(r"\$\((\w+)\)", arg)) <= set(env), arg
    for ordinal in range(SHARDS):
        expanded = expand(shard_arg, {"POD_INDEX": str(ordinal)})
        assert parse_shard(expanded.removeprefix("--shard=")) == Shard(ordinal, SHARDS)


def test_pods_of_the_statefulset_split_the_rendered_config(tmp_path: Path) -> None:
    """`--config.check` of every pod's shard on the rendered config: the counts add up."""
    manifests = template(CASES["sharding"])
    text, config = rendered_config(manifests)
    path = write_config_for_check(text, config, tmp_path)
    shard_arg = next(a for a in container(manifests)["args"] if a.startswith("--shard"))
    total = len(config["targets"])
    counts = []
    for ordinal in range(SHARDS):
        done = subprocess.run(
            [sys.executable, "-m", "exporter", "--config.check", f"--config.file={path}",
             expand(shard_arg, {"POD_INDEX": str(ordinal)})],
            capture_output=True, text=True, cwd=REPO_ROOT, check=False, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        found = re.search(rf"OK, (\d+) of {total} targets on shard {ordinal}/{SHARDS}", done.stdout)
        assert found, done.stdout
        counts.append(int(found.group(1)))
    assert sum(counts) == total


def test_sharding_service_monitor_scrapes_every_pod() -> None:
    """The ServiceMonitor selects the one (headless) Service, which lists every pod of the
    StatefulSet on the port the ServiceMonitor scrapes: each shard is scraped, once."""
    manifests = template(CASES["sharding"])
    monitor = only(manifests, "ServiceMonitor")["spec"]
    services = [
        m
        for m in manifests
        if m["kind"] == "Service"
        and monitor["selector"]["matchLabels"].items() <= m["metadata"]["labels"].items()
    ]
    assert len(services) == 1  # two would scrape every pod twice
    [service] = services
    assert service["spec"]["clusterIP"] == "None"
    pod = only(manifests, "StatefulSet")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    [endpoint] = monitor["endpoints"]
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    [c] = pod["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in c["ports"]}


def test_sharding_off_by_default() -> None:
    manifests = render("example")
    assert not [m for m in manifests if m["kind"] == "StatefulSet"]
    assert "clusterIP" not in only(manifests, "Service")["spec"]
    assert not [a for a in container(manifests)["args"] if "--shard" in a]
    assert "env" not in container(manifests)


@pytest.mark.parametrize(("version", "renders"), [("1.27.9", False), ("1.28.0", True)])
def test_sharding_needs_kubernetes_1_28(version: str, renders: bool) -> None:
    result = run_helm(
        "template", RELEASE, str(CHART), "--values", str(CASES["sharding"]),
        "--kube-version", version,
    )  # fmt: skip
    assert (result.returncode == 0) == renders, result.stderr
    if not renders:
        assert "needs Kubernetes 1.28 or newer" in result.stderr
        assert f"--shard=I/{SHARDS}" in result.stderr  # the way out on an older cluster


def test_sharding_needs_a_cluster_ip_service() -> None:
    result = run_helm(
        "template", RELEASE, str(CHART), "--values", str(CASES["sharding"]),
        "--set", "service.type=NodePort",
    )  # fmt: skip
    assert result.returncode != 0
    assert "service.type ClusterIP" in result.stderr


def test_notes_name_the_shards() -> None:
    result = run_helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
        "--values", str(CASES["sharding"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"split between {SHARDS} shards" in notes
    assert f"port-forward pod/{FULLNAME}-0" in notes


# --- the web config: TLS and basic auth on every endpoint ----------------------------------

WEB_DIR = "/etc/smtp-tls-exporter-web"
#: The probes' user of tests/helm-values/web-config.yaml, as the kubelet sends it.
PROBE_AUTHORIZATION = {
    "name": "Authorization",
    "value": "Basic " + base64.b64encode(b"kubelet:probe password").decode(),
}


def web_config_secret(manifests: list[Manifest]) -> dict[str, Any]:
    """The web config the chart wrote into its Secret."""
    secret = only(manifests, "Secret", f"{FULLNAME}-web-config")
    text = base64.b64decode(secret["data"]["web-config.yml"]).decode()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def web_volume(manifests: list[Manifest]) -> Manifest:
    volumes = workload(manifests)["spec"]["template"]["spec"]["volumes"]
    [volume] = [v for v in volumes if v["name"] == "web-config"]
    found: Manifest = volume
    return found


def test_web_config_is_written_mounted_and_passed() -> None:
    manifests = render("web-config")
    values = load_values(CASES["web-config"])["webConfig"]
    assert web_config_secret(manifests) == values["config"]
    c = container(manifests)
    assert f"--web.config.file={WEB_DIR}/web-config.yml" in c["args"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["web-config"] == {"name": "web-config", "mountPath": WEB_DIR, "readOnly": True}
    sources = web_volume(manifests)["projected"]["sources"]
    assert sources[0] == {"secret": {"name": f"{FULLNAME}-web-config"}}
    # cert-manager's Secret beside it, where the web config's relative paths point.
    assert sources[1]["secret"]["name"] == "exporter-tls"
    assert [i["path"] for i in sources[1]["secret"]["items"]] == ["tls/tls.crt", "tls/tls.key"]
    assert sources[2]["secret"] == {
        "name": "exporter-tls",
        "optional": True,
        "items": [{"key": "ca.crt", "path": "tls/ca.crt"}],
    }


def test_rendered_web_config_passes_the_exporters_check(tmp_path: Path) -> None:
    """The Secret's web config, its tls/ files made here, through `--config.check`."""
    manifests = render("web-config")
    text, config = rendered_config(manifests)
    config_path = write_config_for_check(text, config, tmp_path)
    web_dir = tmp_path / "web"
    (web_dir / "tls").mkdir(parents=True)
    leaf = trustme.CA().issue_cert("mail-smtp-tls-exporter.monitoring.svc")
    leaf.cert_chain_pems[0].write_to_path(str(web_dir / "tls" / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(web_dir / "tls" / "tls.key"))
    web_path = web_dir / "web-config.yml"
    web_path.write_text(json.dumps(web_config_secret(manifests)))
    [flag] = [a for a in container(manifests)["args"] if a.startswith("--web.config.file=")]
    assert flag.removeprefix("--web.config.file=") == f"{WEB_DIR}/{web_path.name}"
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", f"--config.file={config_path}",
         f"--web.config.file={web_path}"],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TLS (client certificates: NoClientCert), basic auth for 2 users" in done.stdout


def test_web_config_from_an_existing_secret() -> None:
    manifests = render(
        "example", "--set", "webConfig.secretName=exporter-web", "--set", "webConfig.key=web.yml",
        "--set", "webConfig.scheme=HTTPS",
    )  # fmt: skip
    assert not [m for m in manifests if m["kind"] == "Secret"]
    c = container(manifests)
    assert f"--web.config.file={WEB_DIR}/web.yml" in c["args"]
    assert web_volume(manifests)["projected"]["sources"] == [{"secret": {"name": "exporter-web"}}]
    # The chart cannot see inside: the scheme comes from values; no credentials, no header.
    assert c["livenessProbe"]["httpGet"] == {
        "path": "/-/healthy", "port": "http-metrics", "scheme": "HTTPS",
    }  # fmt: skip
    annotations = workload(manifests)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/web-config" not in annotations


def test_no_web_config_by_default() -> None:
    manifests = render("example")
    c = container(manifests)
    assert not [a for a in c["args"] if a.startswith("--web.config.file")]
    assert "web-config" not in {m["name"] for m in c["volumeMounts"]}
    assert not [m for m in manifests if m["kind"] == "Secret"]


def test_a_changed_web_config_rolls_the_pod() -> None:
    def checksum(*extra: str) -> str:
        annotations = workload(render("web-config", *extra))["spec"]["template"]["metadata"][
            "annotations"
        ]
        value: str = annotations["checksum/web-config"]
        return value

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "webConfig.config.tls_server_config.min_version=TLS12")


def test_service_monitor_scrapes_over_tls_with_basic_auth() -> None:
    manifests = render("web-config")
    [endpoint] = only(manifests, "ServiceMonitor")["spec"]["endpoints"]
    values = load_values(CASES["web-config"])["serviceMonitor"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == values["tlsConfig"]
    assert endpoint["basicAuth"] == values["basicAuth"]


def test_a_tcp_socket_probe_stays_as_given() -> None:
    """With client certificates required the kubelet cannot get in over HTTPS: the probes
    become tcpSocket ones, and the chart adds nothing to them."""
    manifests = render(
        "web-config", "--set", "livenessProbe.httpGet=null",
        "--set", "livenessProbe.tcpSocket.port=http-metrics",
    )  # fmt: skip
    probe = container(manifests)["livenessProbe"]
    assert "httpGet" not in probe
    assert probe["tcpSocket"] == {"port": "http-metrics"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--set", "webConfig.secretName=a"), "webConfig: set secretName or config, not both"),
        (("--set", "webConfig.config=null"), "webConfig.tlsSecretName: the certificate needs"),
        (("--set", "webConfig.config.basic_auth_users.x=hunter2"), "does not match pattern"),
        (("--set", "webConfig.scheme=https"), "webConfig/scheme"),
        (("--set", "webConfig.secret=a"), "additional properties 'secret' not allowed"),
    ],
)
def test_web_config_values_that_are_refused(flags: tuple[str, ...], message: str) -> None:
    result = run_helm("template", RELEASE, str(CHART), "--values", str(CASES["web-config"]), *flags)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


# --- storage ---------------------------------------------------------------------------------

STORAGE_PATH = "/var/lib/smtp-tls-exporter"


def storage_volume(manifests: list[Manifest]) -> Manifest | None:
    volumes = workload(manifests)["spec"]["template"]["spec"]["volumes"]
    found: list[Manifest] = [v for v in volumes if v["name"] == "storage"]
    return found[0] if found else None


def test_storage_off_by_default() -> None:
    manifests = render("example")
    assert not [a for a in container(manifests)["args"] if a.startswith("--storage.path")]
    assert storage_volume(manifests) is None
    assert "strategy" not in deployment(manifests)["spec"]


def test_storage_on_an_existing_claim_is_mounted_and_passed() -> None:
    manifests = render("storage")
    c = container(manifests)
    assert f"--storage.path={STORAGE_PATH}" in c["args"]
    assert {"name": "storage", "mountPath": STORAGE_PATH} in c["volumeMounts"]
    assert storage_volume(manifests) == {
        "name": "storage",
        "persistentVolumeClaim": {"claimName": "exporter-results"},
    }
    # The old pod lets go of the claim before the new one needs it.
    assert deployment(manifests)["spec"]["strategy"] == {"type": "Recreate"}


def test_storage_without_a_claim_is_an_empty_dir() -> None:
    manifests = render("example", "--set", "storage.enabled=true", "--set", "storage.size=64Mi")
    assert storage_volume(manifests) == {"name": "storage", "emptyDir": {"sizeLimit": "64Mi"}}
    assert f"--storage.path={STORAGE_PATH}" in container(manifests)["args"]
    assert "strategy" not in deployment(manifests)["spec"]


SHARDED_STORAGE = (
    "--set", "storage.enabled=true", "--set", "storage.size=2Gi",
    "--set", "storage.storageClassName=fast-ssd", "--set", "storage.mountPath=/data",
)  # fmt: skip


def test_storage_with_sharding_is_a_claim_per_pod() -> None:
    manifests = template(CASES["sharding"], *SHARDED_STORAGE)
    statefulset = only(manifests, "StatefulSet")
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "storage"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast-ssd",
        "resources": {"requests": {"storage": "2Gi"}},
    }
    c = container(manifests)
    assert "--storage.path=/data" in c["args"]
    assert c["args"][-1] == "--probe.concurrency=20"  # extraArgs still come last
    assert {"name": "storage", "mountPath": "/data"} in c["volumeMounts"]
    assert storage_volume(manifests) is None  # the claim template provides it
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(statefulset, version, strict=True)
    lint = run_helm("lint", "--strict", str(CHART), "--values", str(CASES["sharding"]),
                    *SHARDED_STORAGE)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_storage_with_sharding_and_the_default_class() -> None:
    manifests = template(CASES["sharding"], "--set", "storage.enabled=true")
    [claim] = only(manifests, "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert "storageClassName" not in claim["spec"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--set", "replicaCount=2"), "storage.existingClaim holds the results of one pod"),
        (("--set", "sharding.shards=2"), "storage.existingClaim is for the Deployment"),
        (("--set", "storage.size=lots"), "storage/size"),
        (("--set", "storage.mountPath=data"), "storage/mountPath"),
        (("--set", "storage.claim=a"), "additional properties 'claim' not allowed"),
    ],
)
def test_storage_values_that_are_refused(flags: tuple[str, ...], message: str) -> None:
    result = run_helm("template", RELEASE, str(CHART), "--values", str(CASES["storage"]), *flags)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
