"""deploy/kserve: the InferenceService is valid against KServe's schema and runs the serving image
the way the service expects (V2 protocol, its port, probes on the V2 health endpoints).

The schema is the kserve SDK's: its models are generated from KServe's OpenAPI definitions, and
the pod parts (metadata, containers, probes, resources) are the Kubernetes client's models.
``build`` walks the YAML through the KServe models' type tables, refusing any field they do not
define and any value of the wrong type, and constructs each object so that their required-field
checks run; the Kubernetes parts go to the client's pydantic models, which are strict (no
unknown fields, no coercion) by themselves.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pydantic
import pytest
import yaml

kserve = pytest.importorskip("kserve")
from kserve.constants.constants import KSERVE_KIND_INFERENCESERVICE, KSERVE_V1BETA1, PredictorProtocol  # noqa: E402
from kubernetes.client import models as kubernetes_models  # noqa: E402

from service import create_app  # noqa: E402
from service.config import ServiceConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
INFERENCE_SERVICE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
PRIMITIVES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


class SchemaError(ValueError):
    pass


def build(value: object, type_name: str, where: str) -> object:
    """The SDK object of ``type_name`` made from YAML data; SchemaError for anything off-schema."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            raise SchemaError(f"{where} must be a list")
        return [build(item, type_name[5:-1], f"{where}[{index}]") for index, item in enumerate(value)]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            raise SchemaError(f"{where} must be a mapping")
        item_type = type_name[5:-1].split(", ", 1)[1]
        return {key: build(item, item_type, f"{where}.{key}") for key, item in value.items()}
    if type_name == "object":  # int-or-string fields, such as a probe's port
        return value
    if type_name in PRIMITIVES:
        if not isinstance(value, PRIMITIVES[type_name]) or (type_name != "bool" and isinstance(value, bool)):
            raise SchemaError(f"{where} must be of type {type_name}, not {value!r}")
        return value
    model = getattr(kserve.models, type_name, None)
    if model is None:  # a Kubernetes type: the client's pydantic models are strict, extra fields forbidden
        try:
            return getattr(kubernetes_models, type_name).model_validate(value)
        except pydantic.ValidationError as error:
            raise SchemaError(f"{where}: {error}") from None
    if not isinstance(value, dict):
        raise SchemaError(f"{where} must be a {type_name} mapping")
    fields = {json_name: attribute for attribute, json_name in model.attribute_map.items()}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise SchemaError(f"{where}: {type_name} has no field {unknown}")
    arguments = {
        fields[key]: build(item, model.openapi_types[fields[key]], f"{where}.{key}") for key, item in value.items()
    }
    try:
        return model(**arguments)
    except ValueError as error:  # a required field missing, a value outside an enum
        raise SchemaError(f"{where}: {error}") from None


def validate(document: dict) -> object:
    return build(document, "V1beta1InferenceService", "InferenceService")


def inference_service() -> dict:
    return yaml.safe_load(INFERENCE_SERVICE.read_text())


def predictor_container(document: dict) -> dict:
    (container,) = document["spec"]["predictor"]["containers"]
    return container


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def test_the_inference_service_is_valid_against_kserve_schema():
    document = inference_service()
    assert (document["apiVersion"], document["kind"]) == (KSERVE_V1BETA1, KSERVE_KIND_INFERENCESERVICE)
    service = validate(document)
    assert service.spec.predictor.containers[0].readiness_probe.http_get.path == "/v2/health/ready"


@pytest.mark.parametrize(
    "break_it",
    [
        pytest.param(lambda d: predictor_container(d).update(readinesProbe={}), id="misspelt field"),
        pytest.param(lambda d: predictor_container(d)["ports"][0].update(containerPort="http"), id="port not a number"),
        pytest.param(lambda d: predictor_container(d).pop("name"), id="container without a name"),
        pytest.param(lambda d: d["spec"].pop("predictor"), id="no predictor"),
        pytest.param(lambda d: d["spec"]["predictor"].update(minReplicas="one"), id="replicas not a number"),
    ],
)
def test_the_validator_rejects_a_broken_inference_service(break_it):
    broken = copy.deepcopy(inference_service())
    break_it(broken)
    with pytest.raises(SchemaError):
        validate(broken)


def test_the_predictor_speaks_v2_on_the_port_the_server_listens_on():
    container = predictor_container(inference_service())
    env = env_of(container)
    # KServe reads a custom container's protocol from its PROTOCOL variable.
    assert env["PROTOCOL"] == PredictorProtocol.REST_V2.value
    (port,) = container["ports"]
    assert str(port["containerPort"]) == env["PORT"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port["containerPort"]


def test_the_probes_answer_on_a_ready_service():
    container = predictor_container(inference_service())
    config = ServiceConfig(model_repository=ROOT / "models", refresh_interval=0, execution_providers="cpu")
    client = create_app(config).test_client()
    for probe in ("readinessProbe", "livenessProbe"):
        assert client.get(container[probe]["httpGet"]["path"]).status_code == 200


def test_it_runs_the_serving_image_with_the_deployment_cpu_budget():
    container = predictor_container(inference_service())
    deployment = yaml.safe_load((ROOT / "deploy" / "deployment.yaml").read_text())
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == server["image"]
    assert re.findall(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.M)[-1] == str(
        container["securityContext"]["runAsUser"]
    )
    env = env_of(container)
    cpu = int(env["WORKERS"]) * int(env["INTRA_OP_THREADS"])
    assert float(container["resources"]["limits"]["cpu"]) == float(container["resources"]["requests"]["cpu"]) == cpu
    assert env["MODEL_REPOSITORY"] == env_of(server)["MODEL_REPOSITORY"]
