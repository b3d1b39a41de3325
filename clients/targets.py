"""Where the clients send their calls: one server, or several replicas behind gRPC's own client-side
load balancing.

`--target` takes
  - `HOST:PORT`: one server, one connection, as before (gRPC's default pick_first);
  - `HOST:PORT,HOST:PORT,…`: replicas; names are resolved once, here, and the addresses handed to
    gRPC as one `ipv4:` (or `ipv6:`) target;
  - a gRPC name with a scheme, e.g. `dns:///scratchnet-headless:50051` (every address the name
    resolves to, re-resolved as replicas come and go) or `ipv4:127.0.0.1:50051,127.0.0.1:50052`.

Replicas get a service config: the `round_robin` policy, and a retry policy under which a unary
inference call (Predict, ModelInfer; idempotent) that fails with UNAVAILABLE is tried again, on
the next replica, within the call's deadline.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from clients.credentials import PLAINTEXT, Credentials
from scratchnet.errors import ClientError

__all__ = [
    "RETRY_ATTEMPTS",
    "RETRY_BUFFER_BYTES",
    "SERVICE_CONFIG",
    "Targets",
    "open_aio_channel",
    "open_channel",
    "parse_targets",
]

RETRY_ATTEMPTS = 5
"""Tries of one call, the first included: gRPC caps maxAttempts at 5."""
RETRY_BUFFER_BYTES = 64 * 1024 * 1024
"""gRPC retries a call only while it still holds the request, 256 KiB by default: less than one
default batch (512 KiB of pixels). This covers the server's default message limit (64 MB)."""
# Idempotent calls: answering twice gives the same reply, so a retry is always safe.
_RETRIED = {
    "scratchnet.v1.Classifier": ("Predict", "GetModelInfo"),
    "inference.GRPCInferenceService": (
        "ModelInfer",
        "ModelMetadata",
        "ModelReady",
        "ServerLive",
        "ServerReady",
        "ServerMetadata",
    ),
}
SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [
                {"service": service, "method": method}
                for service, methods in _RETRIED.items()
                for method in methods
            ],
            "retryPolicy": {
                "maxAttempts": RETRY_ATTEMPTS,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
"""The service config of a channel to replicas (gRPC's JSON form)."""
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")
_EXPECTED = (
    "expected HOST:PORT, several separated by commas (HOST:PORT,HOST:PORT), or a gRPC name such "
    "as dns:///HOST:PORT"
)


@dataclass(frozen=True)
class Targets:
    """A parsed --target: what gRPC connects to, and whether calls are spread over replicas."""

    text: str
    """The target as the user wrote it, for messages."""
    channel_target: str
    """What grpc.insecure_channel gets."""
    replicas: int | None
    """Addresses listed: 1 for HOST:PORT; None when a resolver decides (dns:///NAME:PORT)."""
    addresses: tuple[str, ...] = ()
    """Each listed replica's own target (HOST:PORT as given), to reach one of them alone."""

    @property
    def balanced(self) -> bool:
        """True when calls may go to several servers: round robin, retries, no pinned streams."""
        return self.replicas != 1

    def channel_options(self) -> list[tuple[str, int | str]]:
        """gRPC channel arguments: the replicas' service config, when there may be several."""
        if not self.balanced:
            return []
        return [
            ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
            ("grpc.enable_retries", 1),
            ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_BYTES),
        ]


Options = list[tuple[str, int | str]]


def open_channel(
    targets: Targets, credentials: Credentials = PLAINTEXT, options: Options | None = None
) -> grpc.Channel:
    """A channel to `targets`, over TLS when `credentials` say so, with the replicas' service
    config and `options` (added after it)."""
    settings = [*targets.channel_options(), *(options or [])]
    if credentials.tls:
        return grpc.secure_channel(
            targets.channel_target, credentials.channel_credentials(), options=settings
        )
    return grpc.insecure_channel(targets.channel_target, options=settings)


def open_aio_channel(
    targets: Targets, credentials: Credentials = PLAINTEXT, options: Options | None = None
) -> grpc.aio.Channel:
    """open_channel's grpc.aio twin."""
    settings = [*targets.channel_options(), *(options or [])]
    if credentials.tls:
        return grpc.aio.secure_channel(
            targets.channel_target, credentials.channel_credentials(), options=settings
        )
    return grpc.aio.insecure_channel(targets.channel_target, options=settings)


def parse_targets(text: str) -> Targets:
    """The Targets of a --target value; ClientError naming what was expected if it is malformed."""
    if text.startswith(_SCHEMES):
        if text.partition(":")[2].strip("/") == "":
            raise ClientError(f"target {text!r}: no address after the scheme; {_EXPECTED}")
        return Targets(text, text, None)
    parts = text.split(",")
    addresses = [_host_port(part.strip(), text) for part in parts]
    if len(addresses) == 1:
        return Targets(text, text, 1, (text,))
    listed = tuple(part.strip() for part in parts)
    return Targets(text, _resolved(addresses, text), len(addresses), listed)


def _host_port(part: str, text: str) -> tuple[str, int]:
    host, _, port = part.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]:50051
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ClientError(f"target {text!r}: {_EXPECTED}, e.g. 127.0.0.1:50051")
    return host, int(port)


def _resolved(addresses: list[tuple[str, int]], text: str) -> str:
    """One `ipv4:` or `ipv6:` target listing every address of every HOST:PORT."""
    found: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
    families = []
    for host, port in addresses:
        ips = _lookup(host, port, text)
        families.append({family for family, _ in ips})
        for family, ip in ips:
            entry = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
            if entry not in found[family]:
                found[family].append(entry)
    # One gRPC target has one scheme: IPv4 when every host has an IPv4 address, else IPv6.
    for family, scheme in ((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")):
        if all(family in have for have in families):
            return f"{scheme}:" + ",".join(found[family])
    raise ClientError(
        f"target {text!r}: the hosts mix IPv4-only and IPv6-only addresses; list hosts of one "
        "family, or use a name with both"
    )


def _lookup(host: str, port: int, text: str) -> list[tuple[int, str]]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [(socket.AF_INET if ip.version == 4 else socket.AF_INET6, str(ip))]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise ClientError(f"target {text!r}: cannot resolve {host!r} ({error})") from None
    return [
        (int(family), str(address[0]))
        for family, _, _, _, address in infos
        if family in (socket.AF_INET, socket.AF_INET6)
    ]
