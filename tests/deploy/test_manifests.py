"""The Kubernetes manifests in deploy/: valid against the API schemas, and consistent with
each other and with the image.

Schema validation uses kubernetes-validate, which bundles the OpenAPI schemas of each
Kubernetes release, so it runs without a cluster or network.  Strict mode also rejects
unknown (for example misspelt) fields, which `kubectl apply` would silently drop.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# The oldest Kubernetes release the manifests must apply to.
KUBERNETES_VERSION = "1.29"
KUSTOMIZATION = "kustomization.yaml"
KSERVE = "kserve"


def manifest_files() -> list[Path]:
    # deploy/kserve holds a KServe custom resource: test_kserve.py checks it against KServe's schema.
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != KUSTOMIZATION and KSERVE not in p.parts)


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> list[dict]:
    return [doc for path in manifest_files() for doc in documents(path)]


def serving(kind: str) -> dict:
    """The one object of this kind in deploy/ itself (the serving side, not deploy/training/)."""
    (found,) = [
        doc for path in sorted(DEPLOY.glob("*.yaml")) if path.name != KUSTOMIZATION
        for doc in documents(path) if doc["kind"] == kind
    ]
    return found


def deployment() -> dict:
    return serving("Deployment")


def server_container() -> dict:
    (container,) = deployment()["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def validate(doc: dict) -> None:
    # SchemaNotFoundError (an unknown kind or apiVersion) fails the test too: strict on purpose.
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "doc",
    all_documents(),
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}",
)
def test_manifest_is_valid_kubernetes(doc):
    validate(doc)


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinesProbe={}), id="misspelt field"),
        pytest.param(lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="http"), id="port not a number"),
        pytest.param(lambda d: d["spec"].pop("selector"), id="missing selector"),
    ],
)
def test_validator_rejects_a_broken_deployment(break_it):
    broken = copy.deepcopy(deployment())
    break_it(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_every_manifest_is_listed_in_its_kustomization():
    for kustomization in DEPLOY.rglob(KUSTOMIZATION):
        listed = set(yaml.safe_load(kustomization.read_text())["resources"])
        present = {p.name for p in kustomization.parent.glob("*.yaml") if p.name != KUSTOMIZATION}
        assert listed == present, kustomization


def test_service_and_autoscaler_point_at_the_deployment():
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    service = serving("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == server_container()["ports"][0]["name"]
    target = serving("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment()["metadata"]["name"])
    # The autoscaler owns the replica count; a fixed one would fight it on every apply.
    assert "replicas" not in deployment()["spec"]


def test_probes_use_the_service_health_endpoints_on_the_served_port():
    container = server_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    port = container["ports"][0]
    assert str(port["containerPort"]) == env_of(container)["PORT"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]


def test_cpu_limit_matches_workers_times_onnxruntime_threads():
    # onnxruntime sizes its thread pool from the host's cores, not the cgroup quota (TRAPS.md):
    # the pod must say how many it may use, and the limit must agree.
    container = server_container()
    env = env_of(container)
    budget = int(env["WORKERS"]) * int(env["INTRA_OP_THREADS"])
    assert cpus(container["resources"]["limits"]["cpu"]) == budget
    assert cpus(container["resources"]["requests"]["cpu"]) == budget


def test_runs_as_the_image_user_on_a_read_only_root_with_writable_scratch():
    pod = deployment()["spec"]["template"]["spec"]
    container = server_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    dockerfile_users = re.findall(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert dockerfile_users and {int(u) for u in dockerfile_users} == {pod["securityContext"]["runAsUser"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts
    assert env_of(container)["PROMETHEUS_MULTIPROC_DIR"] in mounts
