"""The files of docs/operations.md's "Running it for real": the Containerfile copies what exists
and runs the server, the systemd unit has what a service needs and settings the server accepts,
and the secured Deployment takes TLS and tokens from Secrets, probes health over TLS and asks for
the memory its budget needs. Every command line is parsed by the server's own flag parser."""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path
from typing import Any

from server.config import parse_config
from tests.conftest import REPO
from tests.deploy.test_manifests import (
    DEPLOY,
    IMAGE,
    documents,
    memory_needed_mib,
    mib,
    selects,
    server_config,
)

CONTAINERFILE = REPO / "Containerfile"
UNIT = DEPLOY / "systemd" / "scratchnet.service"
ENV_FILE = DEPLOY / "systemd" / "scratchnet.env"
SECURED = DEPLOY / "kubernetes" / "secured" / "deployment.yaml"
PROBE = "/usr/local/bin/grpc_health_probe"
# After the grace period the server refuses new calls for 0.25 s more before it stops.
DRAIN_TAIL_SECONDS = 0.25


def instructions(path: Path) -> list[tuple[str, str]]:
    """A Containerfile's instructions (keyword, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def test_the_containerfile_copies_what_exists_and_runs_the_server() -> None:
    steps = instructions(CONTAINERFILE)
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    copied = set()
    for keyword, arguments in steps:
        if keyword != "COPY" or arguments.startswith("--from="):
            continue
        *sources, _ = shlex.split(arguments)
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") not in ignored, source
            copied.add(source.rstrip("/"))
    # Every package pyproject.toml builds, and the files its metadata names.
    assert {"scratchnet", "trainer", "export", "server", "clients"} <= copied
    assert {"pyproject.toml", "constraints.txt", "README.md", "LICENSE"} <= copied
    [probe] = [a for k, a in steps if k == "COPY" and a.startswith("--from=")]
    assert probe.split()[-1] == PROBE
    assert any(k == "RUN" and "grpc-health-probe@v" in a for k, a in steps)
    entrypoint = [a for k, a in steps if k == "ENTRYPOINT"]
    assert entrypoint == ['["python", "-m", "server"]']
    [command] = [a for k, a in steps if k == "CMD"]
    config = parse_config(json.loads(command), {}, "server")
    assert config.model_repository == Path("/models") and config.host == "0.0.0.0"
    assert ("USER", "10001") in steps and ("STOPSIGNAL", "SIGTERM") in steps


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    # systemd repeats some keys (Environment=, LoadCredential=): _repeated reads those.
    parser.read_string(UNIT.read_text())
    return parser


def _repeated(key: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{key}=")
    ]


def test_the_systemd_unit_runs_drains_reloads_and_is_configured_by_its_env_file() -> None:
    unit = _unit()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["ExecStart"].endswith("/bin/python -m server")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure" and service["RestartPreventExitStatus"] == "2"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert Path(service["EnvironmentFile"]).name == ENV_FILE.name
    # The env file and the unit's own variables, with systemd's %d (credentials) filled in.
    environ = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            environ[key] = value
    for entry in _repeated("Environment"):
        key, value = entry.split("=", 1)
        environ[key] = value.replace("%d", "/run/credentials/scratchnet.service")
    config = parse_config([], environ, "server")
    assert config.host == "0.0.0.0" and config.model == Path("/var/lib/scratchnet/model.onnx")
    assert config.metrics_port == 8002
    credentials = {entry.split(":", 1)[0] for entry in _repeated("LoadCredential")}
    for path in (config.tls_cert, config.tls_key, config.auth_token_file):
        assert path is not None and path.parent == Path("/run/credentials/scratchnet.service")
        assert path.name in credentials
    assert float(service["TimeoutStopSec"]) > config.grace_seconds + DRAIN_TAIL_SECONDS
    assert mib(service["MemoryMax"]) >= memory_needed_mib(config)


def _secured() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents(SECURED)}


def test_the_secured_deployment_takes_tls_and_tokens_from_secrets_and_probes_over_tls() -> None:
    objects = _secured()
    deployment = objects[("Deployment", "scratchnet-secured")]["spec"]
    pod = deployment["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == IMAGE
    config = server_config(container["command"])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}

    def secret_file(path: Path | None) -> tuple[str, str]:
        """The Secret and key a mounted file comes from."""
        assert path is not None
        return secrets[mounts[str(path.parent)]], path.name

    assert secret_file(config.tls_cert) == ("scratchnet-tls", "tls.crt")
    assert secret_file(config.tls_key) == ("scratchnet-tls", "tls.key")
    assert secret_file(config.auth_token_file) == ("scratchnet-tokens", "tokens")
    assert config.no_reflection and config.host == "0.0.0.0"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": config.port, "metrics": config.metrics_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert Path(PROBE).name == command[0], probe
        flags = dict(flag.lstrip("-").partition("=")[::2] for flag in command[1:])
        assert flags["addr"] == f"127.0.0.1:{config.port}" and "tls" in flags
        assert secret_file(Path(flags["tls-ca-cert"])) == ("scratchnet-tls", "ca.crt")
        # The kubelet waits for the tool's own timeouts (its default would cut them at 1 s).
        waits = sum(float(flags[f"{kind}-timeout"].rstrip("s")) for kind in ("connect", "rpc"))
        assert container[probe]["timeoutSeconds"] > waits, probe
    # The pod may use what the budget makes the server use, and gets the CPUs its threads need.
    resources = container["resources"]
    assert mib(resources["limits"]["memory"]) >= memory_needed_mib(config)
    assert mib(resources["requests"]["memory"]) >= memory_needed_mib(config)
    assert config.workers <= float(resources["requests"]["cpu"])
    assert pod["terminationGracePeriodSeconds"] > config.grace_seconds + DRAIN_TAIL_SECONDS
    assert pod["securityContext"]["runAsUser"] == 10001  # the Containerfile's USER
    # Its own Service selects it; the plaintext replicas' Service does not.
    labels = deployment["template"]["metadata"]["labels"]
    assert selects(objects[("Service", "scratchnet-secured")]["spec"]["selector"], labels)
    [plain] = documents(DEPLOY / "kubernetes" / "service-headless.yaml")
    assert not selects(plain["spec"]["selector"], labels)
