"""clients.targets: the forms of --target, and the service config replicas get. No network."""

from __future__ import annotations

import json

import pytest

from clients.targets import RETRY_BUFFER_BYTES, SERVICE_CONFIG, parse_targets
from scratchnet.errors import ClientError


def test_one_host_port_is_one_server_with_grpcs_defaults() -> None:
    targets = parse_targets("127.0.0.1:50051")
    assert (targets.channel_target, targets.replicas, targets.balanced) == (
        "127.0.0.1:50051",
        1,
        False,
    )
    assert targets.channel_options() == []


@pytest.mark.parametrize(
    ("text", "channel_target", "replicas"),
    [
        ("127.0.0.1:1,127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2", 2),
        ("localhost:1, localhost:2,127.0.0.1:3", "ipv4:127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", 3),
        ("[::1]:1,[::1]:2", "ipv6:[::1]:1,[::1]:2", 2),
        ("dns:///scratchnet-headless:50051", "dns:///scratchnet-headless:50051", None),
        ("ipv4:127.0.0.1:1,127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2", None),
    ],
)
def test_replicas_become_one_grpc_target(text: str, channel_target: str, replicas: int) -> None:
    targets = parse_targets(text)
    assert (targets.channel_target, targets.replicas, targets.balanced) == (
        channel_target,
        replicas,
        True,
    )


def test_replicas_get_round_robin_and_retries_of_idempotent_calls() -> None:
    options = dict(parse_targets("127.0.0.1:1,127.0.0.1:2").channel_options())
    config = json.loads(str(options["grpc.service_config"]))
    assert config == SERVICE_CONFIG
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [method] = config["methodConfig"]
    names = {(name["service"], name["method"]) for name in method["name"]}
    assert {
        ("scratchnet.v1.Classifier", "Predict"),
        ("inference.GRPCInferenceService", "ModelInfer"),
    } <= names
    assert ("scratchnet.v1.Classifier", "PredictStream") not in names
    assert method["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert 2 <= method["retryPolicy"]["maxAttempts"] <= 5  # gRPC's cap
    # A default batch (512 KiB of pixels) must fit gRPC's retry buffer, or it is never retried.
    assert options["grpc.per_rpc_retry_buffer_size"] == RETRY_BUFFER_BYTES >= 512 * 1024
    assert options["grpc.enable_retries"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:1,", "expected HOST:PORT"),
        ("127.0.0.1:1,127.0.0.1", "expected HOST:PORT"),
        ("127.0.0.1:1,:2", "expected HOST:PORT"),
        ("dns:///", "no address after the scheme"),
        ("[::1]:1,127.0.0.1:2", "mix IPv4-only and IPv6-only addresses"),
        ("no-such-host.invalid:1,127.0.0.1:2", "cannot resolve 'no-such-host.invalid'"),
    ],
)
def test_malformed_targets_are_one_clear_line(text: str, message: str) -> None:
    with pytest.raises(ClientError, match=message) as raised:
        parse_targets(text)
    assert "\n" not in str(raised.value)
