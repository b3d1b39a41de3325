"""The manifests in deploy/ parse, and the fields that make them work agree with each other and
with the server: ports, gRPC health probes, selectors, the headless Service, Envoy's cluster."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scratchnet.contract import DEFAULT_PORT
from server.config import ServerConfig, parse_config
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
IMAGE = "scratchnet:latest"
SERVE = ["python", "-m", "server"]


def documents(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kubernetes() -> dict[tuple[str, str], dict[str, Any]]:
    """The Kubernetes objects of deploy/kubernetes, by (kind, name)."""
    objects = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in documents(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def server_config(command: list[str]) -> ServerConfig:
    """The server's configuration from a container's command, parsed by the server itself (a
    flag it does not know exits 2, failing the test)."""
    assert command[:3] == SERVE, command
    return parse_config(command[3:], {}, "server")


def mib(quantity: str) -> float:
    """A Kubernetes (Mi, Gi) or systemd (M, G) memory size, in MiB."""
    match = re.fullmatch(r"([\d.]+)\s*([A-Za-z]*)", quantity)
    assert match is not None, quantity
    number, unit = match.groups()
    scale = {"Mi": 1, "Gi": 1024, "M": 1, "G": 1024, "K": 1 / 1024, "Ki": 1 / 1024}
    return float(number) * scale[unit]


def memory_needed_mib(config: ServerConfig) -> float:
    """The most the server's RSS reached with its memory budget full, plus a margin: 292 MiB at
    --max-inflight-mb 64 and 782 MiB at 256 (docs/operations.md), under 100 + 4 x budget."""
    return 100 + 4 * config.max_inflight_mb


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def port_of(container: dict[str, Any], name: str) -> int:
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == name)


def test_every_manifest_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {path.parent.name for path in files} == {"kubernetes", "envoy", "kserve", "secured"}
    for path in files:
        docs = documents(path)
        assert docs, path
        if path.parent.name != "envoy":
            assert all({"apiVersion", "kind", "metadata"} <= doc.keys() for doc in docs), path


def test_the_deployment_runs_several_health_checked_replicas() -> None:
    deployment = kubernetes()[("Deployment", "scratchnet")]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    labels = spec["template"]["metadata"]["labels"]
    assert selects(spec["selector"]["matchLabels"], labels)
    [container] = spec["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    config = server_config(container["command"])
    assert config.model_repository == Path("/models") and config.host == "0.0.0.0"
    assert port_of(container, "grpc") == config.port == DEFAULT_PORT
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": DEFAULT_PORT}, probe
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    [volume] = spec["template"]["spec"]["volumes"]
    assert mounts[volume["name"]] == "/models"
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in kubernetes()
    # Kubernetes must give the server its whole drain before it kills the pod.
    grace = parse_config([], {}, "server").grace_seconds
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_the_headless_service_selects_the_server_pods() -> None:
    objects = kubernetes()
    service = objects[("Service", "scratchnet-headless")]["spec"]
    pod = objects[("Deployment", "scratchnet")]["spec"]["template"]
    assert service["clusterIP"] == "None"
    assert selects(service["selector"], pod["metadata"]["labels"])
    proxy = objects[("Deployment", "scratchnet-envoy")]["spec"]["template"]
    assert not selects(service["selector"], proxy["metadata"]["labels"])
    [port] = service["ports"]
    [container] = pod["spec"]["containers"]
    assert port["port"] == DEFAULT_PORT and port_of(container, port["targetPort"]) == DEFAULT_PORT


def test_envoy_balances_calls_round_robin_over_http2_to_the_replicas() -> None:
    [config] = documents(DEPLOY / "envoy" / "envoy.yaml")
    resources = config["static_resources"]
    [cluster] = resources["clusters"]
    assert cluster["lb_policy"] == "ROUND_ROBIN" and cluster["type"] == "STRICT_DNS"
    options = cluster["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"]
    assert any("grpc_health_check" in check for check in cluster["health_checks"])
    [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    service = kubernetes()[("Service", "scratchnet-headless")]
    assert address["address"].startswith(f"{service['metadata']['name']}.")
    assert address["port_value"] == service["spec"]["ports"][0]["port"]
    [listener] = resources["listeners"]
    [manager] = listener["filter_chains"][0]["filters"]
    routes = manager["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert {route["route"]["cluster"] for route in routes} == {cluster["name"]}
    assert "unavailable" in routes[0]["route"]["retry_policy"]["retry_on"]
    # The proxy's pods listen where the listener does and read this file from the ConfigMap.
    proxy = kubernetes()[("Deployment", "scratchnet-envoy")]["spec"]["template"]["spec"]
    [container] = proxy["containers"]
    assert port_of(container, "grpc") == listener["address"]["socket_address"]["port_value"]
    assert container["args"] == ["-c", "/etc/envoy/envoy.yaml"]
    [volume] = proxy["volumes"]
    assert volume["configMap"]["name"] == "scratchnet-envoy"
    proxy_service = kubernetes()[("Service", "scratchnet-envoy")]["spec"]
    proxy_labels = kubernetes()[("Deployment", "scratchnet-envoy")]["spec"]["template"]
    assert selects(proxy_service["selector"], proxy_labels["metadata"]["labels"])


def test_kserve_runs_the_server_as_a_custom_grpc_predictor() -> None:
    [service] = documents(DEPLOY / "kserve" / "inferenceservice.yaml")
    assert (service["apiVersion"], service["kind"]) == (
        "serving.kserve.io/v1beta1",
        "InferenceService",
    )
    [container] = service["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container" and container["image"] == IMAGE
    config = server_config(container["command"])
    # KServe's storage initializer puts STORAGE_URI's files in /mnt/models.
    assert config.model_repository == Path("/mnt/models") and config.host == "0.0.0.0"
    assert config.port == DEFAULT_PORT
    assert {env["name"] for env in container["env"]} >= {"STORAGE_URI"}
    # Knative routes HTTP/2 (gRPC) only to a port named h2c.
    assert container["ports"] == [{"name": "h2c", "containerPort": DEFAULT_PORT, "protocol": "TCP"}]
    assert container["readinessProbe"]["grpc"] == {"port": DEFAULT_PORT}


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: p.name)
def test_manifests_name_only_the_image_the_containerfile_builds(path: Path) -> None:
    for doc in documents(path):
        for container in _containers(doc):
            image = container["image"]
            assert image == IMAGE or image.startswith("envoyproxy/envoy:"), (path, image)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if "template" in spec:
        return list(spec["template"]["spec"]["containers"])
    if "predictor" in spec:
        return list(spec["predictor"]["containers"])
    return []


def _server_containers() -> list[tuple[str, dict[str, Any]]]:
    """Every container that runs the server, in every manifest, by file."""
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for document in documents(path):
            spec = document.get("spec", {})
            pod = spec.get("template", {}).get("spec") or spec.get("predictor") or {}
            for container in pod.get("containers", []):
                if container.get("command", [])[:3] == SERVE:
                    found.append((path.name, container))
    return found


@pytest.mark.parametrize(
    "name_container", _server_containers(), ids=lambda pair: f"{pair[0]}:{pair[1]['name']}"
)
def test_every_server_container_gets_the_memory_and_cpus_its_flags_use(
    name_container: tuple[str, dict[str, Any]],
) -> None:
    # RSS up to about 100 MiB + 4 x --max-inflight-mb (docs/operations.md); without --workers the
    # threads would be as many as the node's cores, not the pod's.
    _, container = name_container
    config = server_config(container["command"])
    resources = container["resources"]
    assert mib(resources["limits"]["memory"]) >= memory_needed_mib(config)
    assert mib(resources["requests"]["memory"]) >= memory_needed_mib(config)
    assert "--workers" in container["command"]
    assert config.workers <= float(resources["requests"]["cpu"])
